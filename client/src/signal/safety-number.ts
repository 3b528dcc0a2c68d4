import { Fingerprint, PublicKey, ScannableFingerprint } from "@signalapp/libsignal-client";

/** Iterations of libsignal's fingerprint hash (as Signal clients use). */
const iterations = 5200;
/** Fingerprint version 2: identifiers are account UUIDs as 16 bytes. */
const version = 2;

const uuidBytes = (uuid: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Buffer.from(uuid.replace(/-/g, ""), "hex")) as Uint8Array<ArrayBuffer>;

/** A safety number between two accounts: the same on both sides. */
export interface SafetyNumber {
  /** 60 digits. */
  digits: string;
  /** The digits in twelve groups of five, as people read them aloud. */
  grouped: string;
  /** libsignal's scannable form (what a QR code carries), base64. */
  scannable: string;
}

/** Computes the safety number between `local` and `remote` with libsignal. */
export function safetyNumber(
  localUuid: string,
  localKey: PublicKey,
  remoteUuid: string,
  remoteKey: PublicKey,
): SafetyNumber {
  const fp = Fingerprint.new(iterations, version, uuidBytes(localUuid), localKey, uuidBytes(remoteUuid), remoteKey);
  const digits = fp.displayableFingerprint().toString();
  return {
    digits,
    grouped: digits.match(/.{5}/g)!.join(" "),
    scannable: Buffer.from(fp.scannableFingerprint().toBuffer()).toString("base64"),
  };
}

/**
 * Whether what the user entered matches: either the 60 digits (spaces
 * ignored) or a scanned payload, compared by libsignal (which also checks
 * that the scan came from the other side).
 */
export function matchesSafetyNumber(expected: SafetyNumber, entered: string): boolean {
  const digits = entered.replace(/\s+/g, "");
  if (/^\d{60}$/.test(digits)) return digits === expected.digits;
  try {
    const mine = ScannableFingerprint._fromBuffer(
      new Uint8Array(Buffer.from(expected.scannable, "base64")) as Uint8Array<ArrayBuffer>,
    );
    const theirs = ScannableFingerprint._fromBuffer(
      new Uint8Array(Buffer.from(entered.trim(), "base64")) as Uint8Array<ArrayBuffer>,
    );
    return mine.compare(theirs);
  } catch {
    return false;
  }
}
