/**
 * What each table and column of the ZimChat database tells someone who has
 * the disk, in plain words. `zimchat seizure-report` compares this list with
 * the tables and columns the database itself reports, and refuses to run
 * when they differ: a new column cannot slip in undescribed.
 */

/** One table: what a row is, and what each column reveals. */
export interface TableNote {
  /** What one row is, and how long it stays. */
  row: string;
  columns: Record<string, string>;
  /** Only on this provider (internal bookkeeping tables). */
  provider?: "sqlite" | "postgresql";
}

/** Every table of the data model and of the migration and SQLite bookkeeping. */
export const tableNotes: Record<string, TableNote> = {
  Account: {
    row: "one per account, until the account is deleted",
    columns: {
      id: "account UUID (the libsignal address and the sender id in sealed-sender certificates)",
      username: "username (unique on this server; the public handle @username:server)",
      identityKey: "identity PUBLIC key (safety numbers can be computed from it; it decrypts nothing)",
      createdAt: "account creation day (kept at midnight UTC since day truncation; older rows may have the exact time)",
      accessKeyHash:
        "SHA-256 hash of the unidentified-access key (lets the server check sealed senders; the key itself is not stored)",
      unrestrictedAccess: "whether the account accepts sealed-sender messages from anyone",
      disabledAt:
        "the day an admin disabled the account (null when it is enabled); a disabled account cannot authenticate",
    },
  },
  Device: {
    row: "one per device of an account (1..127), until unlinked or the account is deleted",
    columns: {
      accountId: "account the device belongs to",
      id: "device number within the account (how many devices an account has)",
      registrationId: "libsignal registration id (random, public to the account's contacts)",
      passwordSalt: "random salt of the device password hash",
      passwordHash: "salted SHA-256 of the device password (passwords carry >= 128 random bits; not reversible)",
      createdAt: "device creation day (when it was registered or linked)",
      lastSeenDay: "last connection day (days since the epoch, no finer time)",
    },
  },
  SignedPreKey: {
    row: "one per device, replaced on rotation",
    columns: {
      accountId: "account of the device",
      deviceId: "device number",
      keyId: "client-chosen key id (hints at how often keys were rotated)",
      publicKey: "signed EC pre-key, PUBLIC key only",
      signature: "identity key's signature over the public key (public)",
    },
  },
  KyberLastResortKey: {
    row: "one per device, replaced on rotation",
    columns: {
      accountId: "account of the device",
      deviceId: "device number",
      keyId: "client-chosen key id",
      publicKey: "Kyber last-resort pre-key, PUBLIC key only",
      signature: "identity key's signature over the public key (public)",
    },
  },
  EcPreKey: {
    row: "one per unused one-time EC pre-key; deleted when a bundle fetch hands it out",
    columns: {
      accountId: "account of the device",
      deviceId: "device number",
      keyId: "client-chosen key id",
      publicKey: "one-time EC pre-key, PUBLIC key only (how many remain hints at how many sessions were started)",
    },
  },
  KyberPreKey: {
    row: "one per unused one-time Kyber pre-key; deleted when a bundle fetch hands it out",
    columns: {
      accountId: "account of the device",
      deviceId: "device number",
      keyId: "client-chosen key id",
      publicKey: "one-time Kyber pre-key, PUBLIC key only",
      signature: "identity key's signature over the public key (public)",
    },
  },
  Envelope: {
    row: "one per message queued for an offline or not-yet-acknowledging device; deleted on acknowledgement or expiry",
    columns: {
      seq: "delivery order (with the sequence high-water mark: how many envelopes were ever queued)",
      id: "random envelope UUID",
      accountId: "recipient account",
      deviceId: "recipient device",
      type: "message kind: 2 whisper, 3 prekey (a new session), 6 sealed sender",
      sourceAccountId: "sender of non-sealed envelopes (null when sealed): who writes to whom, while queued",
      sourceDeviceId: "sender device of non-sealed envelopes (null when sealed)",
      sourceServer:
        "federation: the other homeserver that relayed the envelope (also for sealed ones): which servers this server's users hear from, while queued",
      content:
        "ciphertext only (and its length, padded by clients); for a multi-recipient message only the recipient's sealed-sender header",
      sharedPayloadId:
        "multi-recipient messages: the shared ciphertext row (envelopes naming one row were one group send, while queued)",
      size: "bytes delivered (content plus any shared part), for the mailbox caps",
      serverTimestamp: "time the server accepted the envelope, rounded down to the minute, while queued",
      expiresAt: "time the envelope is deleted unread, rounded down to the minute",
    },
  },
  SharedPayload: {
    row: "one per queued multi-recipient message, stored once for all its recipients; deleted with its last envelope",
    columns: {
      id: "random UUID",
      content: "the shared ciphertext of a sealed-sender multi-recipient message",
    },
  },
  MailboxUsage: {
    row: "one per device that has had envelopes queued: counts kept for the mailbox caps",
    columns: {
      accountId: "account of the device",
      deviceId: "device number",
      envelopes: "envelopes queued now",
      bytes: "bytes queued now",
    },
  },
  SendIdempotency: {
    row: "one per send that carried an idempotency key, kept for the envelope TTL so a retried send gets its first answer",
    columns: {
      keyHash:
        "SHA-256 of the key's scope (sending device, or the sealed destinations) and the client's random key: names no account",
      fingerprint:
        "keyed hash of the destination accounts the first send named (a different set is a conflict); unreadable without the client's key",
      answer:
        "the first answer without account ids: the coarse server timestamp and, per recipient, device numbers and envelope ids",
      expiresAt: "expiry time, rounded like server timestamps (tells roughly when the send was made)",
    },
  },
  FederationOutbox: {
    row: "federation: one per send from a local device to an account on another server that server has not accepted yet (it was down); then, if it was refused or expired, a failure notice until the sending device confirms it",
    columns: {
      seq: "order per destination server",
      id: "random send id (the other server de-duplicates by it)",
      server: "the destination homeserver: which servers this server's users write to, while queued",
      destination: "the recipient account on that server: who writes to whom, while queued",
      accountId: "the sending account (told if the send fails)",
      deviceId: "the sending device",
      messages: "the send's libsignal ciphertexts as JSON (emptied when it becomes a failure notice)",
      expiresAt: "when the send is given up (the envelope lifetime), or when an unconfirmed failure notice is deleted",
      failure: "the remote-delivery-failed notice once given up: recipient, reason and device numbers, no content",
    },
  },
  FederationPeer: {
    row: "federation: one per other homeserver this server has relayed sends to or an admin blocked",
    columns: {
      server: "the other homeserver's name",
      failures: "failed transactions in a row (backoff)",
      nextAttemptAt: "when the next transaction may start",
      blocked: "blocked by an admin (refused both ways)",
    },
  },
  Invite: {
    row: "one per registration invite the admin created, kept after use",
    columns: {
      id: "short public invite id",
      tokenHash: "SHA-256 hash of the invite token (the token itself is not stored)",
      maxUses: "how many registrations the invite allows",
      uses: "how many registrations it was used for (not by whom)",
      expiresAt: "invite expiry time",
      createdAt: "time the admin created the invite",
      revokedAt: "time the admin revoked it, if revoked",
    },
  },
  LinkCode: {
    row: "one per pending device link; expires after minutes",
    columns: {
      codeHash: "SHA-256 hash of the linking code (the code itself is not stored)",
      accountId: "account that confirmed the link (a device is being added to it)",
      provisioningMessage: "ciphertext sealed to the new device's ephemeral key (the server cannot open it)",
      expiresAt: "expiry time of the code (ms): roughly when a device was being linked",
    },
  },
  Attachment: {
    row: "one per uploaded attachment until it expires",
    columns: {
      id: "random attachment id (the blob's name in the data directory)",
      accountId: "uploader account (kept for the upload quota; not the recipients)",
      size: "padded ciphertext size in bytes (a size bucket, not the exact file size)",
      createdAt: "upload time (ms)",
      expiresAt: "deletion time (ms)",
    },
  },
  PluginEntry: {
    row: "one per entry a server plugin keeps in its own storage, until the plugin deletes it (plugins are listed in the server's config file)",
    columns: {
      plugin: "name of the plugin that keeps the entry (which plugins this server runs, or ran)",
      key: "the plugin's own key for the entry (plugins choose them; they may name account UUIDs)",
      value:
        "what the plugin keeps, as text: plugins see metadata only (account and device ids, usernames at registration, public identity keys, counts, sizes, times), " +
        "never plaintext, ciphertext, passwords or addresses; e.g. the key-transparency log holds public identity keys and signed tree heads (public data), " +
        "a quota plugin holds per-account counters",
    },
  },
  _prisma_migrations: {
    row: "one per applied schema migration",
    columns: {
      id: "random migration-run id",
      checksum: "checksum of the migration file",
      finished_at: "when the migration finished (install and upgrade times of this server)",
      migration_name: "migration name (the ZimChat schema version)",
      logs: "migration error log, if any",
      rolled_back_at: "when a migration was rolled back, if ever",
      started_at: "when the migration started",
      applied_steps_count: "migration steps applied",
    },
  },
  sqlite_sequence: {
    provider: "sqlite",
    row: "SQLite's AUTOINCREMENT counter, one per table that has one (Envelope)",
    columns: {
      name: "table name",
      seq: "highest id ever assigned: how many envelopes were ever queued on this server",
    },
  },
};

/** PostgreSQL sequences (SQLite keeps the same counter in `sqlite_sequence`). */
export const sequenceNotes: Record<string, string> = {
  Envelope_seq_seq: "highest Envelope.seq ever assigned: how many envelopes were ever queued on this server",
  FederationOutbox_seq_seq:
    "highest FederationOutbox.seq ever assigned: how many sends to other servers were ever queued here",
};

/** Key columns and the serialized public key they must hold. */
export const publicKeyColumns: { table: string; column: string; kind: "ec" | "kyber" }[] = [
  { table: "Account", column: "identityKey", kind: "ec" },
  { table: "SignedPreKey", column: "publicKey", kind: "ec" },
  { table: "EcPreKey", column: "publicKey", kind: "ec" },
  { table: "KyberLastResortKey", column: "publicKey", kind: "kyber" },
  { table: "KyberPreKey", column: "publicKey", kind: "kyber" },
];

/** Signature columns: 64-byte XEdDSA signatures. */
export const signatureColumns: { table: string; column: string }[] = [
  { table: "SignedPreKey", column: "signature" },
  { table: "KyberLastResortKey", column: "signature" },
  { table: "KyberPreKey", column: "signature" },
];

/** Hash columns: 32-byte SHA-256 digests, never the secret they hash. */
export const hashColumns: { table: string; column: string }[] = [
  { table: "Account", column: "accessKeyHash" },
  { table: "Device", column: "passwordHash" },
  { table: "Invite", column: "tokenHash" },
  { table: "LinkCode", column: "codeHash" },
];
