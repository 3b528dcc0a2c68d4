import type { StoredAttachmentPointer } from "../attachments.js";

/**
 * Everything one device keeps: its credentials and private keys, its
 * libsignal sessions, what it knows of other accounts' identity keys, the
 * ids of envelopes it has processed, and its conversation history. Private
 * keys never leave this store.
 *
 * Implementations are synchronous underneath (SQLite through better-sqlite3,
 * or maps) so that `transaction` can make a decrypt, the message it produced
 * and the envelope id one atomic step.
 */

/** The device's own identity and credentials. */
export interface LocalDevice {
  serverUrl: string;
  uuid: string;
  deviceId: number;
  username: string;
  password: string;
  registrationId: number;
  /** Serialized libsignal PrivateKey of the account identity. */
  identityPrivateKey: Uint8Array<ArrayBuffer>;
  /** The next pre-key id to use (ids are never reused). */
  nextPreKeyId: number;
  /**
   * The account's 16-byte unidentified access key (base64): contacts learn
   * it inside encrypted messages and use it to send sealed messages.
   */
  accessKey: string;
}

/** What this device knows of another account's identity key. */
export interface KnownIdentity {
  uuid: string;
  /** Serialized libsignal PublicKey. */
  publicKey: Uint8Array<ArrayBuffer>;
  /** The user compared safety numbers and marked this key verified. */
  verified: boolean;
  /**
   * The key changed after it had been verified, and the user has not yet
   * re-verified or accepted it: sending is blocked.
   */
  blocked: boolean;
  firstSeen: number;
}

/** A stored pre-key record (EC one-time, signed EC, or Kyber), serialized by libsignal. */
export interface StoredPreKey {
  id: number;
  record: Uint8Array<ArrayBuffer>;
  createdAt: number;
}

/** Which kind of pre-key. */
export type PreKeyKind = "ec" | "signed" | "kyber";

/** A message in the conversation history. */
export interface StoredMessage {
  /** The envelope id for received messages; a local id for sent ones. */
  id: string;
  /** The other party's account id, or `group:<group id>` for a group conversation. */
  peer: string;
  /** Who wrote it: the sender's account id (for groups and sent transcripts, whose peer is not the author). */
  author?: string;
  /** An attachment's pointer (its key stays in this store, like the text), with its server when another. */
  attachment?: StoredAttachmentPointer;
  direction: "in" | "out";
  senderDeviceId: number;
  text: string;
  /** The sender's timestamp. */
  timestamp: number;
  /** When this device stored it. */
  storedAt: number;
}

/**
 * A session record a store may serialize itself, later (libsignal's
 * `SessionRecord`): see {@link DeviceStore.saveSessionRecord}.
 */
export interface SerializableRecord {
  serialize(): Uint8Array<ArrayBuffer>;
}

/** The storage behind one device. */
export interface DeviceStore {
  getLocal(): LocalDevice | null;
  setLocal(local: LocalDevice): void;

  getSession(address: string): Uint8Array<ArrayBuffer> | null;
  saveSession(address: string, record: Uint8Array<ArrayBuffer>): void;
  deleteSession(address: string): void;
  /**
   * Optional: {@link saveSession} with the record still unserialized. A
   * store that holds a transaction's writes until its commit serializes only
   * the last record of each address, once, at the commit.
   */
  saveSessionRecord?(address: string, record: SerializableRecord): void;
  /**
   * Optional, with {@link saveSessionRecord}: the session as stored, or the
   * record object saved last (until it is rolled back), so the caller need
   * not parse what it saved.
   */
  getSessionRecord?(address: string): SerializableRecord | Uint8Array<ArrayBuffer> | null;
  /** Forgets every session (after this device's identity key changed). */
  clearSessions(): void;
  /** Device ids with a session for this account. */
  sessionDevices(uuid: string): number[];

  getIdentity(uuid: string): KnownIdentity | null;
  saveIdentity(identity: KnownIdentity): void;

  getPreKey(kind: PreKeyKind, id: number): StoredPreKey | null;
  savePreKey(kind: PreKeyKind, key: StoredPreKey): void;
  removePreKey(kind: PreKeyKind, id: number): void;
  /** Every stored key of a kind, oldest first. */
  listPreKeys(kind: PreKeyKind): StoredPreKey[];

  /** A setting or small value (current signed key id, last rotation time, ...). */
  getValue(key: string): string | null;
  setValue(key: string, value: string): void;
  /** Every value whose key starts with `prefix`, by key. */
  valuesWithPrefix(prefix: string): [string, string][];
  /** Forgets a value (nothing happens when it is not stored). */
  deleteValue(key: string): void;

  /**
   * The server an account belongs to, as this device bound it: a server
   * name, `""` for this device's own homeserver, or null when the account
   * was never bound. See {@link bindServer}.
   */
  getServerBinding(uuid: string): string | null;
  /**
   * Binds an account to a server (`""`: this device's own homeserver),
   * unless it is bound already: a binding is never replaced (a server that
   * claims another server's account must not be able to move it).
   * @returns the binding in force afterwards: `server`, or the earlier one
   */
  bindServer(uuid: string, server: string, at: number): string;

  hasProcessed(envelopeId: string): boolean;
  markProcessed(envelopeId: string, at: number): void;
  /**
   * Forgets processed ids marked before `before`, and all but the newest
   * `keep`: a server redelivers an envelope only within its lifetime, so
   * older ids are never needed again. @returns how many were forgotten
   */
  pruneProcessed(before: number, keep: number): number;

  addMessage(message: StoredMessage): void;
  /** The conversation with `peer`, oldest first. */
  messages(peer: string, limit?: number): StoredMessage[];

  /**
   * Runs `work` atomically: everything it stores, or nothing. A top-level
   * transaction resolves once its changes are durable.
   */
  transaction<T>(work: () => Promise<T>): Promise<T>;
  /**
   * Optional: {@link transaction}, resolving once committed (later
   * transactions see the changes) with `durable`, a promise that settles once
   * they are on disk, so more work can run while the disk syncs. Nothing that
   * depends on the changes may leave the process before `durable` resolves.
   */
  transactionDeferringSync?<T>(work: () => Promise<T>): Promise<{ value: T; durable: Promise<void> }>;
  close(): void;
}
