import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import type {
  DeviceStore,
  KnownIdentity,
  LocalDevice,
  PreKeyKind,
  StoredMessage,
  StoredPreKey,
} from "./device-store.js";

const schema = `
CREATE TABLE IF NOT EXISTS local (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL, identity BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (address TEXT PRIMARY KEY, uuid TEXT NOT NULL, device INTEGER NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_uuid ON sessions (uuid);
CREATE TABLE IF NOT EXISTS identities (uuid TEXT PRIMARY KEY, public_key BLOB NOT NULL, verified INTEGER NOT NULL, blocked INTEGER NOT NULL, first_seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pre_keys (kind TEXT NOT NULL, id INTEGER NOT NULL, record BLOB NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processed (envelope_id TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS processed_at ON processed (at);
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, peer TEXT NOT NULL, direction TEXT NOT NULL,
  sender_device INTEGER NOT NULL, text TEXT NOT NULL, timestamp INTEGER NOT NULL, stored_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_peer ON messages (peer, seq);
`;

/** Columns added after the first release, created on open when missing. */
const addedColumns: [table: string, column: string, type: string][] = [
  ["messages", "author", "TEXT"],
  ["messages", "attachment", "TEXT"],
];

const bytes = (b: Buffer | Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b) as Uint8Array<ArrayBuffer>;

/**
 * A device store in one SQLite file (WAL, synchronous=FULL), readable and
 * writable by its owner only (mode 0600). Transactions are the database's:
 * a crash mid-transaction leaves the previous state.
 */
export class SqliteDeviceStore implements DeviceStore {
  private readonly db: BetterSqlite3.Database;
  private readonly stmt: Record<string, BetterSqlite3.Statement>;
  private depth = 0;

  constructor(path: string) {
    if (path !== ":memory:") {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // Create the file owner-only before SQLite opens it, so it is never world-readable.
      closeSync(openSync(path, "a", 0o600));
      chmodSync(path, 0o600);
    }
    this.db = new BetterSqlite3(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.exec(schema);
    for (const [table, column, type] of addedColumns) {
      const columns = this.db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
      if (!columns.some((c) => c.name === column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    }
    const p = (sql: string): BetterSqlite3.Statement => this.db.prepare(sql);
    this.stmt = {
      getLocal: p("SELECT data, identity FROM local WHERE id = 1"),
      setLocal: p(
        "INSERT INTO local (id, data, identity) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data, identity = excluded.identity",
      ),
      getSession: p("SELECT record FROM sessions WHERE address = ?"),
      saveSession: p(
        "INSERT INTO sessions (address, uuid, device, record) VALUES (?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET record = excluded.record",
      ),
      deleteSession: p("DELETE FROM sessions WHERE address = ?"),
      clearSessions: p("DELETE FROM sessions"),
      sessionDevices: p("SELECT device FROM sessions WHERE uuid = ? ORDER BY device"),
      getIdentity: p("SELECT uuid, public_key, verified, blocked, first_seen FROM identities WHERE uuid = ?"),
      saveIdentity: p(`INSERT INTO identities (uuid, public_key, verified, blocked, first_seen) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (uuid) DO UPDATE SET public_key = excluded.public_key, verified = excluded.verified, blocked = excluded.blocked, first_seen = excluded.first_seen`),
      getPreKey: p("SELECT id, record, created_at FROM pre_keys WHERE kind = ? AND id = ?"),
      savePreKey: p("INSERT OR REPLACE INTO pre_keys (kind, id, record, created_at) VALUES (?, ?, ?, ?)"),
      removePreKey: p("DELETE FROM pre_keys WHERE kind = ? AND id = ?"),
      listPreKeys: p("SELECT id, record, created_at FROM pre_keys WHERE kind = ? ORDER BY created_at, id"),
      getValue: p("SELECT value FROM kv WHERE key = ?"),
      setValue: p("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
      hasProcessed: p("SELECT 1 FROM processed WHERE envelope_id = ?"),
      markProcessed: p("INSERT OR IGNORE INTO processed (envelope_id, at) VALUES (?, ?)"),
      pruneProcessed: p(
        "DELETE FROM processed WHERE at < ? OR envelope_id IN (SELECT envelope_id FROM processed ORDER BY at DESC LIMIT -1 OFFSET ?)",
      ),
      addMessage: p(
        "INSERT OR IGNORE INTO messages (id, peer, direction, sender_device, text, timestamp, stored_at, author, attachment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      messages: p("SELECT * FROM (SELECT * FROM messages WHERE peer = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq"),
    };
  }

  getLocal(): LocalDevice | null {
    const row = this.stmt.getLocal!.get() as { data: string; identity: Buffer } | undefined;
    return row
      ? {
          ...(JSON.parse(row.data) as Omit<LocalDevice, "identityPrivateKey">),
          identityPrivateKey: bytes(row.identity),
        }
      : null;
  }
  setLocal(local: LocalDevice): void {
    const { identityPrivateKey, ...data } = local;
    this.stmt.setLocal!.run(JSON.stringify(data), identityPrivateKey);
  }
  getSession(address: string): Uint8Array<ArrayBuffer> | null {
    const row = this.stmt.getSession!.get(address) as { record: Buffer } | undefined;
    return row ? bytes(row.record) : null;
  }
  saveSession(address: string, record: Uint8Array<ArrayBuffer>): void {
    const dot = address.lastIndexOf(".");
    this.stmt.saveSession!.run(address, address.slice(0, dot), Number(address.slice(dot + 1)), record);
  }
  deleteSession(address: string): void {
    this.stmt.deleteSession!.run(address);
  }
  clearSessions(): void {
    this.stmt.clearSessions!.run();
  }
  sessionDevices(uuid: string): number[] {
    return (this.stmt.sessionDevices!.all(uuid) as { device: number }[]).map((r) => r.device);
  }
  getIdentity(uuid: string): KnownIdentity | null {
    const row = this.stmt.getIdentity!.get(uuid) as
      { uuid: string; public_key: Buffer; verified: number; blocked: number; first_seen: number } | undefined;
    return row
      ? {
          uuid: row.uuid,
          publicKey: bytes(row.public_key),
          verified: row.verified === 1,
          blocked: row.blocked === 1,
          firstSeen: row.first_seen,
        }
      : null;
  }
  saveIdentity(i: KnownIdentity): void {
    this.stmt.saveIdentity!.run(i.uuid, i.publicKey, i.verified ? 1 : 0, i.blocked ? 1 : 0, i.firstSeen);
  }
  getPreKey(kind: PreKeyKind, id: number): StoredPreKey | null {
    const row = this.stmt.getPreKey!.get(kind, id) as { id: number; record: Buffer; created_at: number } | undefined;
    return row ? { id: row.id, record: bytes(row.record), createdAt: row.created_at } : null;
  }
  savePreKey(kind: PreKeyKind, key: StoredPreKey): void {
    this.stmt.savePreKey!.run(kind, key.id, key.record, key.createdAt);
  }
  removePreKey(kind: PreKeyKind, id: number): void {
    this.stmt.removePreKey!.run(kind, id);
  }
  listPreKeys(kind: PreKeyKind): StoredPreKey[] {
    return (this.stmt.listPreKeys!.all(kind) as { id: number; record: Buffer; created_at: number }[]).map((r) => ({
      id: r.id,
      record: bytes(r.record),
      createdAt: r.created_at,
    }));
  }
  getValue(key: string): string | null {
    return (this.stmt.getValue!.get(key) as { value: string } | undefined)?.value ?? null;
  }
  setValue(key: string, value: string): void {
    this.stmt.setValue!.run(key, value);
  }
  hasProcessed(envelopeId: string): boolean {
    return this.stmt.hasProcessed!.get(envelopeId) !== undefined;
  }
  markProcessed(envelopeId: string, at: number): void {
    this.stmt.markProcessed!.run(envelopeId, at);
  }
  pruneProcessed(before: number, keep: number): number {
    return this.stmt.pruneProcessed!.run(before, keep).changes;
  }
  addMessage(m: StoredMessage): void {
    this.stmt.addMessage!.run(
      m.id,
      m.peer,
      m.direction,
      m.senderDeviceId,
      m.text,
      m.timestamp,
      m.storedAt,
      m.author ?? null,
      m.attachment ? JSON.stringify(m.attachment) : null,
    );
  }
  messages(peer: string, limit = 1000): StoredMessage[] {
    type Row = {
      id: string;
      peer: string;
      direction: "in" | "out";
      sender_device: number;
      text: string;
      timestamp: number;
      stored_at: number;
      author: string | null;
      attachment: string | null;
    };
    return (this.stmt.messages!.all(peer, limit) as Row[]).map((r) => ({
      id: r.id,
      peer: r.peer,
      direction: r.direction,
      senderDeviceId: r.sender_device,
      text: r.text,
      timestamp: r.timestamp,
      storedAt: r.stored_at,
      ...(r.author ? { author: r.author } : {}),
      ...(r.attachment ? { attachment: JSON.parse(r.attachment) as StoredMessage["attachment"] } : {}),
    }));
  }

  /** Every stored value whose key starts with `prefix`. */
  valuesWithPrefix(prefix: string): [string, string][] {
    return (
      this.db
        .prepare("SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key")
        .all(prefix, `${prefix}\uffff`) as { key: string; value: string }[]
    ).map((r) => [r.key, r.value]);
  }

  /**
   * BEGIN ... COMMIT around async work; nested calls are savepoints, so an
   * inner failure rolls back only its own changes. The client runs store
   * work one task at a time, so nothing else uses the connection in between.
   */
  async transaction<T>(work: () => Promise<T>): Promise<T> {
    const savepoint = `s${this.depth}`;
    this.db.exec(this.depth === 0 ? "BEGIN IMMEDIATE" : `SAVEPOINT ${savepoint}`);
    this.depth++;
    try {
      const result = await work();
      this.db.exec(this.depth === 1 ? "COMMIT" : `RELEASE ${savepoint}`);
      return result;
    } catch (error) {
      this.db.exec(this.depth === 1 ? "ROLLBACK" : `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`);
      throw error;
    } finally {
      this.depth--;
    }
  }

  /** Copies the whole store, consistently, to another file (owner-only). */
  async backup(destination: string): Promise<void> {
    await this.db.backup(destination);
    chmodSync(destination, 0o600);
  }

  close(): void {
    this.db.close();
  }
}
