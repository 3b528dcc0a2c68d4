/**
 * Limits shared by both ends of the wire. The server enforces every one of
 * them; clients use them to size their requests.
 */
export const limits = {
  /** Device ids are 1..127 within an account. */
  maxDeviceId: 127,
  /** libsignal registration ids are 1..16380. */
  minRegistrationId: 1,
  maxRegistrationId: 16380,
  /** Pre-key ids are unsigned 31-bit integers. */
  maxKeyId: 2 ** 31 - 1,
  /** One-time EC or Kyber pre-keys in one upload request, each. */
  maxKeysPerUpload: 100,
  /** Opaque content bytes per destination device (413 above this). */
  maxContentBytes: 96 * 1024,
  /**
   * Bytes of one HTTP body or one Socket.IO packet (413 above this); the largest per-route JSON body limit but one
   * (multi-recipient sends).
   */
  maxBodyBytes: 2 * 1024 * 1024,
  /**
   * Bytes of a JSON body on a route that states no limit of its own (`RouteSpec.maxBodyBytes`), plugin routes included
   * (413 above this).
   */
  defaultMaxBodyBytes: 8 * 1024,
  /**
   * Nesting depth of arrays and objects in a JSON body (400 `too_deeply_nested` above this); the protocol's bodies nest
   * at most 4 deep.
   */
  maxJsonDepth: 16,
  /** Envelopes in one delivery batch or one fetch page. */
  maxEnvelopesPerBatch: 100,
  /** Envelope ids in one acknowledgement. */
  maxAckIds: 1000,
  /** Device password length in characters: the SDK sends base64url of 24 random bytes (32 characters, 192 bits). */
  minPasswordLength: 32,
  maxPasswordLength: 128,
  /** Serialized libsignal EC public key (0x05 type byte + 32 bytes). */
  ecPublicKeyBytes: 33,
  /** Serialized libsignal Kyber-1024 public key (0x08 type byte + 1568 bytes). */
  kyberPublicKeyBytes: 1569,
  /** XEdDSA signature bytes. */
  signatureBytes: 64,
  /** A federation signing key (Ed25519, raw). */
  ed25519PublicKeyBytes: 32,
  /** An Ed25519 signature. */
  ed25519SignatureBytes: 64,
  /** Characters of a server name (a DNS name, optionally with :port). */
  maxServerNameLength: 255,
  /** Federation signing keys one server document lists (the current one and those still rotating out). */
  maxFederationKeys: 8,
  /** Sends in one federation transaction (`PUT /federation/v1/send/{txnId}`). */
  maxFederationTransactionSends: 100,
  /** Bytes of one federation transaction's JSON body: the outbox packs sends up to it. */
  maxFederationTransactionBytes: 4 * 1024 * 1024,
  /** Unidentified access key bytes (sealed sender). */
  accessKeyBytes: 16,
  /** A linking code is valid this long after it is created. */
  linkCodeTtlSeconds: 600,
  /** Bytes of one sealed provisioning message (device linking). */
  maxProvisioningMessageBytes: 16 * 1024,
  /** Bytes of one multi-recipient sealed-sender message. */
  maxMultiRecipientBytes: 1536 * 1024,
  /** Recipient accounts of one multi-recipient send. */
  maxGroupRecipients: 1000,
  /**
   * Server timestamps (`serverTimestamp` of envelopes and send answers) are
   * rounded down to this many ms, so envelopes of one upload do not share a
   * telling millisecond; order envelopes by queue position, not by this.
   */
  serverTimestampGranularityMs: 60_000,
  /** Characters of a send's idempotency key (base64url; 16 random bytes are 22). */
  minIdempotencyKeyChars: 16,
  maxIdempotencyKeyChars: 64,
} as const;

/** Usernames: lowercase letters, digits, `_` and `.`, 3 to 32 characters. */
export const usernamePattern = /^[a-z0-9_.]{3,32}$/;
