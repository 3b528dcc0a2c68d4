/**
 * Identity and public keys, HPKE sealing (device linking) and signature
 * checks, all libsignal's. The rest of the client holds these keys as opaque
 * values or serialized bytes.
 */
import { PrivateKey, PublicKey } from "@signalapp/libsignal-client";

export type { PrivateKey, PublicKey } from "@signalapp/libsignal-client";

/** A new identity (or ephemeral) key pair's private key, serialized. */
export function newPrivateKey(): Uint8Array<ArrayBuffer> {
  return PrivateKey.generate().serialize();
}

/** A new ephemeral key pair (device linking): the private key stays in this process. */
export function newEphemeralKey(): PrivateKey {
  return PrivateKey.generate();
}

/** The public key of a private key. */
export function publicKeyOf(key: PrivateKey): PublicKey {
  return key.getPublicKey();
}

/** The serialized public key of a serialized private key. */
export function publicKeyBytesOf(privateKey: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  return PrivateKey.deserialize(privateKey).getPublicKey().serialize();
}

/** Parses a serialized private key. @throws when it is not one */
export function privateKeyFromBytes(bytes: Uint8Array<ArrayBuffer>): PrivateKey {
  return PrivateKey.deserialize(bytes);
}

/** Parses a serialized public key. @throws when it is not one */
export function publicKeyFromBytes(bytes: Uint8Array<ArrayBuffer>): PublicKey {
  return PublicKey.deserialize(bytes);
}

/** A public key's serialized form. */
export function publicKeyBytes(key: PublicKey): Uint8Array<ArrayBuffer> {
  return key.serialize();
}

/** Whether `signature` over `message` verifies with `key` (libsignal's XEdDSA check). */
export function verifySignature(
  key: PublicKey | Uint8Array<ArrayBuffer>,
  message: Uint8Array<ArrayBuffer>,
  signature: Uint8Array<ArrayBuffer>,
): boolean {
  const publicKey = key instanceof Uint8Array ? PublicKey.deserialize(key) : key;
  return publicKey.verify(message, signature);
}

/** Seals `plaintext` to a public key (libsignal's `PublicKey.seal`, HPKE). */
export function sealTo(
  to: PublicKey,
  plaintext: Uint8Array<ArrayBuffer>,
  info: string,
  associatedData: Uint8Array<ArrayBuffer>,
): Uint8Array<ArrayBuffer> {
  return to.seal(plaintext, info, associatedData);
}

/** Opens what {@link sealTo} sealed. @throws when it does not open */
export function openSealed(
  key: PrivateKey,
  sealed: Uint8Array<ArrayBuffer>,
  info: string,
  associatedData: Uint8Array<ArrayBuffer>,
): Uint8Array {
  return key.open(sealed, info, associatedData);
}
