import { chmodSync, closeSync, existsSync, fdatasync, fdatasyncSync, fsyncSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import type {
  DeviceStore,
  KnownIdentity,
  LocalDevice,
  PreKeyKind,
  SerializableRecord,
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
CREATE TABLE IF NOT EXISTS server_bindings (uuid TEXT PRIMARY KEY, server TEXT NOT NULL, bound_at INTEGER NOT NULL);
`;

/** Columns added after the first release, created on open when missing. */
const addedColumns: [table: string, column: string, type: string][] = [
  ["messages", "author", "TEXT"],
  ["messages", "attachment", "TEXT"],
];

const bytes = (b: Buffer | Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b) as Uint8Array<ArrayBuffer>;

/** Entries each read cache keeps at most (the oldest is dropped first). */
const cacheLimit = 1000;

/** A map that forgets its oldest entry beyond {@link cacheLimit}. */
class BoundedCache<K, V> extends Map<K, V> {
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= cacheLimit) this.delete(this.keys().next().value as K);
    return super.set(key, value);
  }
}

/** A held session record: serialized, or still an object (serialized when written); null deletes. */
type HeldSession = Uint8Array<ArrayBuffer> | SerializableRecord | null;

const serialized = (record: Uint8Array<ArrayBuffer> | SerializableRecord): Uint8Array<ArrayBuffer> =>
  record instanceof Uint8Array ? record : record.serialize();

/**
 * Writes made inside one transaction level (the transaction or one of its
 * savepoints) that are held until the top-level commit: session records
 * (the last one per address counts; null deletes), processed ids and
 * messages (inserted as given).
 */
interface Deferred {
  /** Its SAVEPOINT (or BEGIN) was issued: only once a write has to reach the database inside it. */
  open: boolean;
  sessions: Map<string, HeldSession>;
  /** Every session was deleted at this level (before the entries in `sessions`). */
  clearedSessions: boolean;
  processed: Map<string, number>;
  messages: StoredMessage[];
}

/** A released savepoint's held writes become its parent's. */
function mergeInto(parent: Deferred, child: Deferred): void {
  if (child.clearedSessions) {
    parent.sessions.clear();
    parent.clearedSessions = true;
  }
  for (const [address, record] of child.sessions) parent.sessions.set(address, record);
  for (const [envelopeId, at] of child.processed)
    if (!parent.processed.has(envelopeId)) parent.processed.set(envelopeId, at);
  parent.messages.push(...child.messages);
}

const newLevel = (open: boolean): Deferred => ({
  open,
  sessions: new Map(),
  clearedSessions: false,
  processed: new Map(),
  messages: [],
});

/**
 * Commits and writes outside transactions by any store in this process: a
 * store whose reads were checked for other connections' commits in this turn
 * of the event loop checks again when this changed (another instance on the
 * same file may have written).
 */
let processWrites = 0;

/**
 * A device store in one SQLite file (WAL), readable and writable by its
 * owner only (mode 0600). Transactions are the database's: a crash
 * mid-transaction leaves the previous state.
 *
 * Durability is that of `synchronous=FULL` (every commit is on disk before
 * anyone is told it happened), without the event loop waiting for the disk:
 * SQLite runs with `synchronous=NORMAL` (a commit writes its WAL frames but
 * does not fsync them) and the store fsyncs (fdatasync) the WAL file itself,
 * on libuv's thread pool, before the promise of a top-level
 * {@link transaction} resolves. A write outside any transaction is synced
 * before the call returns, as before. Commits made while a sync is running
 * share the next one. An fsync that fails leaves the store refusing every
 * later transaction (the disk's state is unknown, and retrying an fsync can
 * falsely succeed).
 *
 * Reads of the device, identities, sessions, device lists and values are
 * served from a cache that every write goes through; any rollback empties
 * it, and a commit by another connection (another process on the same file,
 * seen through `PRAGMA data_version`) does too.
 *
 * Inside a transaction, session records, processed ids and messages are
 * held in memory (per savepoint, so a rolled-back savepoint drops its own)
 * and written together just before the top-level COMMIT, in the same
 * transaction: a batch saves each session once, and the inserts run back to
 * back. Reads see them as if written. A session saved as a record object
 * ({@link saveSessionRecord}) is serialized then, once per address however
 * many times it changed in the transaction.
 */
export class SqliteDeviceStore implements DeviceStore {
  private readonly db: BetterSqlite3.Database;
  private readonly stmt: Record<string, BetterSqlite3.Statement>;
  private depth = 0;
  /** Held writes of each open transaction level (index: depth - 1). */
  private readonly levels: Deferred[] = [];

  // Read caches: undefined (or absent) means "not cached"; null caches "not stored".
  private local: LocalDevice | null | undefined = undefined;
  private readonly identities = new BoundedCache<string, KnownIdentity | null>();
  private readonly sessions = new BoundedCache<string, Uint8Array<ArrayBuffer> | null>();
  /** The record object each written session record was serialized from, handed back by getSessionRecord. */
  private readonly sessionSources = new WeakMap<Uint8Array, SerializableRecord>();
  private readonly devices = new BoundedCache<string, number[]>();
  private readonly values = new BoundedCache<string, string | null>();
  private readonly bindings = new BoundedCache<string, string | null>();
  /** `PRAGMA data_version` when the caches were last known to match the file. */
  private dataVersion = 0;
  /** Whether, and at which count of this process's writes, the caches were checked in this turn of the event loop. */
  private checkedThisTurn = false;
  private checkedAtWrites = -1;

  /** The WAL file, opened to fsync it; null for an in-memory database (or when SQLite does the syncing itself). */
  private walFd: number | null = null;
  /** The fsync running now, and the one queued after it (shared by every commit made meanwhile). */
  private syncing: Promise<void> | null = null;
  private nextSync: Promise<void> | null = null;
  /** Set once an fsync failed: nothing is trusted to reach the disk after that. */
  private failed: Error | null = null;
  private closed = false;

  constructor(path: string) {
    if (path !== ":memory:") {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // Create the file owner-only before SQLite opens it, so it is never world-readable.
      closeSync(openSync(path, "a", 0o600));
      chmodSync(path, 0o600);
    }
    this.db = new BetterSqlite3(path);
    const journal = this.db.pragma("journal_mode = WAL", { simple: true });
    this.db.pragma("synchronous = FULL");
    this.db.exec(schema);
    for (const [table, column, type] of addedColumns) {
      const columns = this.db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
      if (!columns.some((c) => c.name === column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    }
    // From here on the store syncs the WAL itself (see the class comment), when there is one to sync.
    const wal = `${path}-wal`;
    if (path !== ":memory:" && journal === "wal" && existsSync(wal)) {
      this.walFd = openSync(wal, "r");
      // The WAL file's directory entry is made durable once, as SQLite does for a new WAL under FULL.
      const dir = openSync(dirname(path), "r");
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
      this.db.pragma("synchronous = NORMAL");
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
      deleteValue: p("DELETE FROM kv WHERE key = ?"),
      getServerBinding: p("SELECT server FROM server_bindings WHERE uuid = ?"),
      // Never replaces a binding: the primary key keeps the first one.
      bindServer: p(
        "INSERT INTO server_bindings (uuid, server, bound_at) VALUES (?, ?, ?) ON CONFLICT (uuid) DO NOTHING",
      ),
      hasProcessed: p("SELECT 1 FROM processed WHERE envelope_id = ?"),
      markProcessed: p("INSERT OR IGNORE INTO processed (envelope_id, at) VALUES (?, ?)"),
      pruneProcessed: p(
        "DELETE FROM processed WHERE at < ? OR envelope_id IN (SELECT envelope_id FROM processed ORDER BY at DESC LIMIT -1 OFFSET ?)",
      ),
      addMessage: p(
        "INSERT OR IGNORE INTO messages (id, peer, direction, sender_device, text, timestamp, stored_at, author, attachment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      messages: p("SELECT * FROM (SELECT * FROM messages WHERE peer = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq"),
      conversationPeers: p("SELECT peer FROM messages GROUP BY peer ORDER BY MAX(seq) DESC").pluck(),
      dataVersion: p("PRAGMA data_version").pluck(),
    };
    this.dataVersion = this.stmt.dataVersion!.get() as number;
  }

  getLocal(): LocalDevice | null {
    this.checkFresh();
    if (this.local === undefined) {
      const row = this.stmt.getLocal!.get() as { data: string; identity: Buffer } | undefined;
      this.local = row
        ? {
            ...(JSON.parse(row.data) as Omit<LocalDevice, "identityPrivateKey">),
            identityPrivateKey: bytes(row.identity),
          }
        : null;
    }
    // A copy: a caller changing it changes nothing stored.
    return this.local && { ...this.local };
  }
  setLocal(local: LocalDevice): void {
    const { identityPrivateKey, ...data } = local;
    this.write(() => this.stmt.setLocal!.run(JSON.stringify(data), identityPrivateKey));
    this.local = { ...local };
  }
  getSession(address: string): Uint8Array<ArrayBuffer> | null {
    const held = this.heldSession(address);
    if (held !== undefined) return held && serialized(held);
    return this.storedSession(address);
  }
  getSessionRecord(address: string): SerializableRecord | Uint8Array<ArrayBuffer> | null {
    const held = this.heldSession(address);
    if (held !== undefined) return held;
    const stored = this.storedSession(address);
    return (stored && this.sessionSources.get(stored)) ?? stored;
  }
  /** The session an open transaction holds for an address (null: deleted), or undefined when none does. */
  private heldSession(address: string): HeldSession | undefined {
    for (let i = this.levels.length - 1; i >= 0; i--) {
      const level = this.levels[i]!;
      const held = level.sessions.get(address);
      if (held !== undefined) return held;
      if (level.clearedSessions) return null;
    }
    return undefined;
  }
  /** The session as the database (through the cache) has it. */
  private storedSession(address: string): Uint8Array<ArrayBuffer> | null {
    this.checkFresh();
    let record = this.sessions.get(address);
    if (record === undefined) {
      const row = this.stmt.getSession!.get(address) as { record: Buffer } | undefined;
      record = row ? bytes(row.record) : null;
      this.sessions.set(address, record);
    }
    return record;
  }
  saveSessionRecord(address: string, record: SerializableRecord): void {
    this.saveSession(address, record);
  }
  saveSession(address: string, record: Uint8Array<ArrayBuffer> | SerializableRecord): void {
    if (this.failed) throw this.failed;
    const level = this.levels.at(-1);
    if (level) level.sessions.set(address, record);
    else this.writeSession(address, record);
  }
  deleteSession(address: string): void {
    if (this.failed) throw this.failed;
    const level = this.levels.at(-1);
    if (level) level.sessions.set(address, null);
    else this.writeSession(address, null);
  }
  clearSessions(): void {
    this.write(() => this.stmt.clearSessions!.run());
    this.sessions.clear();
    this.devices.clear();
    const level = this.levels.at(-1);
    if (level) {
      level.sessions.clear();
      level.clearedSessions = true;
    }
  }
  /** Writes one session record (null: deletes it) to the database, and to the cache. */
  private writeSession(address: string, held: HeldSession): void {
    const record = held && serialized(held);
    if (held && record && held !== record) this.sessionSources.set(record, held as SerializableRecord);
    const dot = address.lastIndexOf(".");
    const uuid = address.slice(0, dot);
    const device = Number(address.slice(dot + 1));
    if (record) {
      this.write(() => this.stmt.saveSession!.run(address, uuid, device, record));
      if (!this.devices.get(uuid)?.includes(device)) this.devices.delete(uuid);
    } else {
      this.write(() => this.stmt.deleteSession!.run(address));
      this.devices.delete(uuid);
    }
    this.sessions.set(address, record);
  }
  sessionDevices(uuid: string): number[] {
    // What the database holds, then the held writes on top.
    let base: number[] = [];
    if (!this.levels.some((l) => l.clearedSessions)) {
      this.checkFresh();
      let devices = this.devices.get(uuid);
      if (!devices) {
        devices = (this.stmt.sessionDevices!.all(uuid) as { device: number }[]).map((r) => r.device);
        this.devices.set(uuid, devices);
      }
      base = devices;
    }
    const prefix = `${uuid}.`;
    if (!this.levels.some((l) => l.sessions.size)) return [...base];
    const result = new Set(base);
    let start = 0;
    for (let i = 0; i < this.levels.length; i++) if (this.levels[i]!.clearedSessions) start = i;
    for (const level of this.levels.slice(start)) {
      for (const [address, record] of level.sessions) {
        if (!address.startsWith(prefix) || address.lastIndexOf(".") !== uuid.length) continue;
        const device = Number(address.slice(prefix.length));
        if (record) result.add(device);
        else result.delete(device);
      }
    }
    return [...result].sort((a, b) => a - b);
  }
  getIdentity(uuid: string): KnownIdentity | null {
    this.checkFresh();
    let identity = this.identities.get(uuid);
    if (identity === undefined) {
      const row = this.stmt.getIdentity!.get(uuid) as
        { uuid: string; public_key: Buffer; verified: number; blocked: number; first_seen: number } | undefined;
      identity = row
        ? {
            uuid: row.uuid,
            publicKey: bytes(row.public_key),
            verified: row.verified === 1,
            blocked: row.blocked === 1,
            firstSeen: row.first_seen,
          }
        : null;
      this.identities.set(uuid, identity);
    }
    return identity && { ...identity };
  }
  saveIdentity(i: KnownIdentity): void {
    this.write(() =>
      this.stmt.saveIdentity!.run(i.uuid, i.publicKey, i.verified ? 1 : 0, i.blocked ? 1 : 0, i.firstSeen),
    );
    this.identities.set(i.uuid, { ...i });
  }
  getPreKey(kind: PreKeyKind, id: number): StoredPreKey | null {
    const row = this.stmt.getPreKey!.get(kind, id) as { id: number; record: Buffer; created_at: number } | undefined;
    return row ? { id: row.id, record: bytes(row.record), createdAt: row.created_at } : null;
  }
  savePreKey(kind: PreKeyKind, key: StoredPreKey): void {
    this.write(() => this.stmt.savePreKey!.run(kind, key.id, key.record, key.createdAt));
  }
  removePreKey(kind: PreKeyKind, id: number): void {
    this.write(() => this.stmt.removePreKey!.run(kind, id));
  }
  listPreKeys(kind: PreKeyKind): StoredPreKey[] {
    return (this.stmt.listPreKeys!.all(kind) as { id: number; record: Buffer; created_at: number }[]).map((r) => ({
      id: r.id,
      record: bytes(r.record),
      createdAt: r.created_at,
    }));
  }
  getValue(key: string): string | null {
    this.checkFresh();
    let value = this.values.get(key);
    if (value === undefined) {
      value = (this.stmt.getValue!.get(key) as { value: string } | undefined)?.value ?? null;
      this.values.set(key, value);
    }
    return value;
  }
  setValue(key: string, value: string): void {
    this.write(() => this.stmt.setValue!.run(key, value));
    this.values.set(key, value);
  }
  deleteValue(key: string): void {
    this.write(() => this.stmt.deleteValue!.run(key));
    this.values.set(key, null);
  }
  getServerBinding(uuid: string): string | null {
    this.checkFresh();
    let server = this.bindings.get(uuid);
    if (server === undefined) {
      server = (this.stmt.getServerBinding!.get(uuid) as { server: string } | undefined)?.server ?? null;
      this.bindings.set(uuid, server);
    }
    return server;
  }
  bindServer(uuid: string, server: string, at: number): string {
    this.write(() => this.stmt.bindServer!.run(uuid, server, at));
    // Read back: another instance on the same file may have bound it first.
    this.bindings.delete(uuid);
    const bound = (this.stmt.getServerBinding!.get(uuid) as { server: string } | undefined)?.server ?? server;
    this.bindings.set(uuid, bound);
    return bound;
  }
  hasProcessed(envelopeId: string): boolean {
    if (this.levels.some((l) => l.processed.has(envelopeId))) return true;
    return this.stmt.hasProcessed!.get(envelopeId) !== undefined;
  }
  markProcessed(envelopeId: string, at: number): void {
    if (this.failed) throw this.failed;
    const level = this.levels.at(-1);
    if (level) {
      if (!level.processed.has(envelopeId)) level.processed.set(envelopeId, at);
    } else {
      this.write(() => this.stmt.markProcessed!.run(envelopeId, at));
    }
  }
  /** Prunes what is in the database (ids held by an open transaction are written after, and pruned next time). */
  pruneProcessed(before: number, keep: number): number {
    return this.write(() => this.stmt.pruneProcessed!.run(before, keep).changes);
  }
  addMessage(m: StoredMessage): void {
    if (this.failed) throw this.failed;
    const level = this.levels.at(-1);
    if (level) level.messages.push({ ...m });
    else this.write(() => this.insertMessage(m));
  }
  private insertMessage(m: StoredMessage): void {
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
    const stored = (this.stmt.messages!.all(peer, limit) as Row[]).map((r): StoredMessage => ({
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
    const held = this.levels.flatMap((l) => l.messages).filter((m) => m.peer === peer);
    if (!held.length) return stored;
    // Held messages come after the stored ones, as they will be numbered; a repeated id is ignored, as on insert.
    const ids = new Set(stored.map((m) => m.id));
    const added = held.filter((m) => !ids.has(m.id) && ids.add(m.id)).map((m) => ({ ...m }));
    return [...stored, ...added].slice(-limit);
  }

  /**
   * Every conversation with stored messages (an account id or `group:<id>`),
   * the one with the latest stored message first (messages an open
   * transaction holds are not counted yet).
   */
  conversationPeers(): string[] {
    return this.stmt.conversationPeers!.all() as string[];
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
   * A top-level transaction resolves once its commit is on disk.
   */
  async transaction<T>(work: () => Promise<T>): Promise<T> {
    const outer = this.depth === 0;
    const { value, durable } = await this.transactionDeferringSync(work);
    if (outer) await durable;
    return value;
  }

  /**
   * {@link transaction}, resolving once committed (later transactions see
   * its changes) with `durable`, which settles once the commit is on disk:
   * nothing that depends on the changes may leave the process before that.
   * Inside another transaction, `durable` is that of the outer one's commit.
   */
  async transactionDeferringSync<T>(work: () => Promise<T>): Promise<{ value: T; durable: Promise<void> }> {
    if (this.failed) throw this.failed;
    const savepoint = `s${this.depth}`;
    if (this.depth === 0) {
      this.db.exec("BEGIN IMMEDIATE");
      // The write lock is held from here to the commit: only this connection's changes can happen meanwhile.
      this.checkFresh(true);
    }
    // A savepoint is issued only when a write has to reach the database inside it (see write()); most are never.
    this.depth++;
    this.levels.push(newLevel(this.depth === 1));
    try {
      const value = await work();
      const level = this.levels.pop()!;
      if (this.depth === 1) {
        this.writeHeld(level);
        this.db.exec("COMMIT");
        processWrites++;
      } else {
        if (level.open) this.db.exec(`RELEASE ${savepoint}`);
        mergeInto(this.levels.at(-1)!, level);
      }
      return { value, durable: this.depth === 1 ? this.sync() : Promise.resolve() };
    } catch (error) {
      // This level's held writes (still there if the work threw) are dropped with its database changes.
      const level = this.levels.length === this.depth ? this.levels.pop()! : { open: true };
      if (level.open) {
        this.db.exec(this.depth === 1 ? "ROLLBACK" : `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`);
        this.forgetCached();
      }
      throw error;
    } finally {
      this.depth--;
    }
  }

  /** Writes a top-level transaction's held writes, back to back, just before its COMMIT. */
  private writeHeld(level: Deferred): void {
    for (const [address, record] of level.sessions) this.writeSession(address, record);
    for (const [envelopeId, at] of level.processed) this.stmt.markProcessed!.run(envelopeId, at);
    for (const m of level.messages) this.insertMessage(m);
  }

  /** Runs one write; outside a transaction it is its own commit, synced before this returns (as under FULL). */
  private write<T>(statement: () => T): T {
    if (this.failed) throw this.failed;
    // Savepoints not issued yet are, outermost first, so that a rollback undoes this write.
    for (let i = 1; i < this.levels.length; i++) {
      const level = this.levels[i]!;
      if (!level.open) {
        this.db.exec(`SAVEPOINT s${i}`);
        level.open = true;
      }
    }
    const result = statement();
    if (this.depth === 0) processWrites++;
    if (this.depth === 0 && this.walFd !== null && !this.closed) {
      try {
        fdatasyncSync(this.walFd);
      } catch (error) {
        throw (this.failed = error as Error);
      }
    }
    return result;
  }

  /**
   * Resolves once everything committed so far is on disk: one fdatasync of
   * the WAL file, off the event loop. While one runs, later commits wait for
   * the next, which they share.
   */
  private sync(): Promise<void> {
    if (this.walFd === null) return Promise.resolve();
    if (this.nextSync) return this.nextSync;
    if (this.syncing) {
      const next = this.syncing.then(
        () => {
          this.nextSync = null;
          return this.startSync();
        },
        (error: unknown) => {
          this.nextSync = null;
          throw error;
        },
      );
      this.nextSync = next;
      return next;
    }
    return this.startSync();
  }

  private startSync(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    // Closing synced the WAL: everything committed is on disk.
    if (this.closed || this.walFd === null) return Promise.resolve();
    const fd = this.walFd;
    const running = new Promise<void>((resolve, reject) =>
      fdatasync(fd, (error) => {
        if (this.syncing === running) this.syncing = null;
        if (this.closed) this.closeWal();
        if (error) reject((this.failed ??= error));
        else resolve();
      }),
    );
    this.syncing = running;
    return running;
  }

  /**
   * Empties the read caches when another connection committed since they
   * were filled; `force` checks inside a transaction too (done right after
   * BEGIN IMMEDIATE, which locks out other writers until the commit).
   */
  private checkFresh(force = false): void {
    if (this.depth > 0 && !force) return;
    // Another process's commit can only be learned of in a later turn of the event loop (through I/O or a timer):
    // once per turn is enough, unless a store in this process wrote meanwhile.
    if (!force && this.checkedThisTurn && this.checkedAtWrites === processWrites) return;
    const version = this.stmt.dataVersion!.get() as number;
    if (version !== this.dataVersion) {
      this.dataVersion = version;
      this.forgetCached();
    }
    this.checkedAtWrites = processWrites;
    if (!this.checkedThisTurn) {
      this.checkedThisTurn = true;
      process.nextTick(() => (this.checkedThisTurn = false));
    }
  }

  private forgetCached(): void {
    this.local = undefined;
    this.identities.clear();
    this.sessions.clear();
    this.devices.clear();
    this.values.clear();
    this.bindings.clear();
  }

  /** Copies the whole store, consistently, to another file (owner-only). */
  async backup(destination: string): Promise<void> {
    await this.db.backup(destination);
    chmodSync(destination, 0o600);
  }

  /** Closes the database; everything committed is on disk once this returns. */
  close(): void {
    if (this.closed) return;
    if (this.walFd !== null) {
      try {
        fdatasyncSync(this.walFd);
      } catch (error) {
        this.failed ??= error as Error;
      }
    }
    this.closed = true;
    this.db.close();
    this.closeWal();
  }

  /** Closes the WAL descriptor, unless a sync on the thread pool still uses it (then that sync's end does). */
  private closeWal(): void {
    if (this.walFd === null || this.syncing) return;
    closeSync(this.walFd);
    this.walFd = null;
  }
}
