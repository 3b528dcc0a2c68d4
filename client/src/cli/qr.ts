import QRCode from "qrcode";

/** A QR code of `payload` drawn with block characters, for a terminal. */
export function terminalQr(payload: string): Promise<string> {
  return QRCode.toString(payload, { type: "terminal", small: true });
}
