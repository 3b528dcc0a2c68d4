import { KEMPublicKey, PreKeySignalMessage, PublicKey, SignalMessage } from "@signalapp/libsignal-client";
import { missingCase, type EnvelopeType } from "@zimchat/protocol";
import { HttpError } from "../errors.js";
import type { Bytes } from "../db/database.js";

/** Decodes base64 that the protocol schema has already checked. */
export function fromBase64(value: string): Bytes {
  return new Uint8Array(Buffer.from(value, "base64")) as Bytes;
}

/** Parses an EC public key with libsignal. @throws HttpError `invalid_key` */
export function parseEcKey(bytes: Bytes, what: string): PublicKey {
  try {
    return PublicKey.deserialize(bytes);
  } catch (error) {
    throw new HttpError("invalid_key", `${what} is not a libsignal EC public key`, {}, {}, { cause: error });
  }
}

/** Parses a Kyber public key with libsignal. @throws HttpError `invalid_key` */
export function checkKyberKey(bytes: Bytes, what: string): void {
  try {
    KEMPublicKey.deserialize(bytes);
  } catch (error) {
    throw new HttpError("invalid_key", `${what} is not a libsignal Kyber public key`, {}, {}, { cause: error });
  }
}

/**
 * Checks the identity key's signature over a serialized public key.
 * @throws HttpError `invalid_signature` (422)
 */
export function checkSignature(identityKey: PublicKey, publicKey: Bytes, signature: Bytes, what: string): void {
  if (!identityKey.verify(publicKey, signature)) {
    throw new HttpError("invalid_signature", `the signature of ${what} does not verify against the identity key`);
  }
}

/**
 * Checks that envelope content parses as the libsignal message its type
 * names, so no route accepts plaintext. Parsing is structural only: the
 * server holds no key that could decrypt it.
 * @throws HttpError `invalid_ciphertext`
 */
export function checkCiphertext(type: EnvelopeType, content: Bytes): void {
  try {
    switch (type) {
      case "whisper":
        SignalMessage.deserialize(content);
        return;
      case "prekey":
        PreKeySignalMessage.deserialize(content);
        return;
      case "sealed":
        checkSealedSender(content);
        return;
      default:
        missingCase(type);
    }
  } catch (error) {
    throw new HttpError("invalid_ciphertext", `content is not a libsignal ${type} message`, {}, {}, { cause: error });
  }
}

/** Smallest sealed-sender message: version byte, ephemeral key, encrypted static key and MACs. */
const minSealedSenderBytes = 1 + 32 + 32 + 16;

/**
 * A sealed-sender message can only be opened with the recipient's identity
 * key, so the server checks its frame: the version byte of libsignal's
 * sealed sender v1 (0x11) or v2 (0x22, 0x23) and a plausible length.
 */
function checkSealedSender(content: Bytes): void {
  const major = (content[0] ?? 0) >> 4;
  if ((major !== 1 && major !== 2) || content.length < minSealedSenderBytes)
    throw new Error("not a sealed-sender message");
}
