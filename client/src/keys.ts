/** How the client manages its pre-keys. */
export interface KeyPolicy {
  /** One-time keys of each kind uploaded at registration and per refill. @default 100 */
  batchSize: number;
  /** Refill when the server holds fewer than this many of a kind. @default 20 */
  refillBelow: number;
  /** Rotate the signed pre-key and the Kyber last-resort key this often. @default 7 days */
  rotateEveryMs: number;
  /** Keep replaced signed and last-resort keys this long, for in-flight first messages. @default 30 days */
  graceMs: number;
}

/** The default key policy. */
export const defaultKeyPolicy: KeyPolicy = {
  batchSize: 100,
  refillBelow: 20,
  rotateEveryMs: 7 * 86_400_000,
  graceMs: 30 * 86_400_000,
};

// Generated and stored by the Signal backend.
export {
  lastResortKyberIds,
  newKyberPreKey,
  newOneTimeKeys,
  newSignedPreKey,
  pruneReplacedKeys,
} from "./signal/prekeys.js";
