/** Sealed-sender certificates, parsed and validated by libsignal. */
import { PublicKey, SenderCertificate } from "@signalapp/libsignal-client";

export type { SenderCertificate } from "@signalapp/libsignal-client";

/** Parses a serialized sender certificate. @throws when it is not one */
export function parseSenderCertificate(bytes: Uint8Array<ArrayBuffer>): SenderCertificate {
  return SenderCertificate.deserialize(bytes);
}

/** A certificate's serialized form. */
export function senderCertificateBytes(certificate: SenderCertificate): Uint8Array {
  return certificate.serialize();
}

/** When a certificate expires (ms since the epoch). */
export function senderCertificateExpiration(certificate: SenderCertificate): number {
  return certificate.expiration();
}

/**
 * Whether a certificate is signed (through its server certificate) by `trustRoot` (serialized) and not expired at
 * `now`.
 */
export function senderCertificateValid(
  certificate: SenderCertificate,
  trustRoot: Uint8Array<ArrayBuffer>,
  now: number,
): boolean {
  return certificate.validate(PublicKey.deserialize(trustRoot), now);
}

/** The identity key a certificate names, serialized. */
export function senderCertificateKey(certificate: SenderCertificate): Uint8Array {
  return certificate.key().serialize();
}
