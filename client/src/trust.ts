import type { KnownIdentity } from "./store/device-store.js";

/**
 * Decides whether a peer's identity key may be used (libsignal's
 * `isTrustedIdentity`). Replaceable: pass one to `ZimClient`.
 */
export interface TrustPolicy {
  /**
   * @param known what this device stored for the peer, or null on first contact
   * @param key the serialized key libsignal is about to use
   * @param direction sending (encrypting to the key) or receiving
   */
  isTrusted(known: KnownIdentity | null, key: Uint8Array, direction: "sending" | "receiving"): boolean;
}

/**
 * Trust on first use. A changed key is accepted for receiving, and for
 * sending unless the contact had been verified: then sending is blocked
 * until the user re-verifies or accepts the change.
 */
export const trustOnFirstUse: TrustPolicy = {
  isTrusted(known, key, direction) {
    if (!known || Buffer.from(known.publicKey).equals(Buffer.from(key)))
      return !known?.blocked || direction === "receiving";
    return direction === "receiving" || !known.verified;
  },
};
