import QRCode from "qrcode";

/**
 * A QR code of `payload` for a terminal: with `colour`, drawn with ANSI
 * colours (black on white, whatever the terminal's own colours); without,
 * as plain block characters with no escape codes (light modules as blocks,
 * which reads right on the usual dark terminal), for pipes, files and NO_COLOR.
 */
export async function terminalQr(payload: string, colour: boolean): Promise<string> {
  if (colour) return QRCode.toString(payload, { type: "terminal", small: true });
  return QRCode.toString(payload, { type: "utf8", margin: 2, color: { dark: "#ffffff", light: "#000000" } });
}
