/**
 * The client's Signal backend: the one place that calls
 * `@signalapp/libsignal-client`. Everything else in the client imports from here.
 */
export {
  SignalBackend,
  decryptionFailureReason,
  isUntrustedIdentity,
  type BundleDevice,
  type Ciphertext,
  type DeviceAddress,
  type OpenedEnvelope,
} from "./backend.js";
export {
  parseSenderCertificate,
  senderCertificateBytes,
  senderCertificateExpiration,
  senderCertificateKey,
  senderCertificateValid,
  type SenderCertificate,
} from "./certificates.js";
export {
  newEphemeralKey,
  newPrivateKey,
  openSealed,
  privateKeyFromBytes,
  publicKeyBytes,
  publicKeyBytesOf,
  publicKeyFromBytes,
  publicKeyOf,
  sealTo,
  verifySignature,
  type PrivateKey,
  type PublicKey,
} from "./keys.js";
export { lastResortKyberIds, newKyberPreKey, newOneTimeKeys, newSignedPreKey, pruneReplacedKeys } from "./prekeys.js";
export { matchesSafetyNumber, safetyNumber, type SafetyNumber } from "./safety-number.js";
export { signalStores, type IdentityChangeListener, type SignalStores } from "./stores.js";
