/**
 * The bridge's own state, in `bridge.db` beside the bot's protocol store:
 * which group maps to which target (as the group state last approved it),
 * the durable outbox of ZimChat messages not yet confirmed by the network,
 * the ids of messages already relayed, the puppet names handed out, and
 * which groups were told that no admin approved the bridge.
 *
 * The outbox holds relayed plaintext until the network confirmed it (then
 * the row is deleted, and `secure_delete` overwrites it on disk): that is
 * the window a seized bridge exposes, and no longer.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { NetworkName, OutgoingMessage } from "./network.js";

/** The file name of the bridge's state in the bot's directory. */
export const bridgeStoreFileName = "bridge.db";

/** A group the bridge relays, as its state last approved it. */
export interface Mapping {
  groupId: string;
  network: NetworkName;
  target: string;
  attachments: boolean;
  /** When the bridge first saw the approval, ms since the epoch. */
  since: number;
}

/** A new outbox row (the id is assigned by the store). */
export type QueuedMessage = Omit<OutgoingMessage, "id"> & { groupId: string; messageKey: string };

const schema = `
  CREATE TABLE IF NOT EXISTS mappings (
    group_id TEXT PRIMARY KEY,
    network TEXT NOT NULL,
    target TEXT NOT NULL,
    attachments INTEGER NOT NULL,
    since INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL,
    target TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    text TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS relayed (
    message_key TEXT PRIMARY KEY,
    at INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS puppets (
    sender_id TEXT NOT NULL,
    network TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (sender_id, network)
  );
  CREATE TABLE IF NOT EXISTS refusals (
    group_id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
  );
`;

/** How many relayed-message keys are kept for de-duplication (the oldest go first). */
const relayedKept = 10_000;

export class BridgeStore {
  private readonly db: Database.Database;

  private constructor(readonly path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("secure_delete = ON");
    this.db.exec(schema);
  }

  /**
   * Opens the store in `dir`. `mustExist`: the bot is already registered, so
   * a missing store means it was lost (the mappings and the unconfirmed
   * outbox with it): refuse rather than start empty.
   * @throws BridgeStoreMissingError
   */
  static open(dir: string, mustExist: boolean): BridgeStore {
    const path = join(dir, bridgeStoreFileName);
    if (mustExist && !existsSync(path)) throw new BridgeStoreMissingError(path);
    return new BridgeStore(path);
  }

  close(): void {
    this.db.close();
  }

  // ------------------------------------------------------------ mappings

  mappings(): Mapping[] {
    return this.db
      .prepare<[], { group_id: string; network: NetworkName; target: string; attachments: number; since: number }>(
        "SELECT group_id, network, target, attachments, since FROM mappings ORDER BY since",
      )
      .all()
      .map((r) => ({
        groupId: r.group_id,
        network: r.network,
        target: r.target,
        attachments: r.attachments === 1,
        since: r.since,
      }));
  }

  mapping(groupId: string): Mapping | undefined {
    return this.mappings().find((m) => m.groupId === groupId);
  }

  setMapping(mapping: Mapping): void {
    this.db
      .prepare(
        `INSERT INTO mappings (group_id, network, target, attachments, since) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (group_id) DO UPDATE SET network = excluded.network, target = excluded.target,
           attachments = excluded.attachments`,
      )
      .run(mapping.groupId, mapping.network, mapping.target, mapping.attachments ? 1 : 0, mapping.since);
  }

  /** Forgets a group's mapping and drops what it still had queued (its approval is gone). */
  removeMapping(groupId: string): void {
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM mappings WHERE group_id = ?").run(groupId);
      this.db.prepare("DELETE FROM outbox WHERE group_id = ?").run(groupId);
    })();
  }

  // ------------------------------------------------------------ outbox

  /**
   * Queues a message unless its key was relayed before (a redelivered
   * envelope): both in one commit, so a crash never relays twice or drops.
   * @returns whether it was queued
   */
  enqueue(message: QueuedMessage): boolean {
    return this.db.transaction(() => {
      const fresh =
        this.db
          .prepare("INSERT OR IGNORE INTO relayed (message_key, at) VALUES (?, ?)")
          .run(message.messageKey, Date.now()).changes === 1;
      if (!fresh) return false;
      this.db
        .prepare("INSERT INTO outbox (group_id, target, sender_id, sender_name, text) VALUES (?, ?, ?, ?, ?)")
        .run(message.groupId, message.target, message.senderId, message.senderName, message.text);
      this.db
        .prepare(
          "DELETE FROM relayed WHERE message_key IN (SELECT message_key FROM relayed ORDER BY at DESC LIMIT -1 OFFSET ?)",
        )
        .run(relayedKept);
      return true;
    })();
  }

  /** The oldest queued messages, in order. */
  pending(limit: number): OutgoingMessage[] {
    return this.db
      .prepare<[number], { id: number; target: string; sender_id: string; sender_name: string; text: string }>(
        "SELECT id, target, sender_id, sender_name, text FROM outbox ORDER BY id LIMIT ?",
      )
      .all(limit)
      .map((r) => ({ id: r.id, target: r.target, senderId: r.sender_id, senderName: r.sender_name, text: r.text }));
  }

  /**
   * Deletes confirmed messages, then checkpoints the write-ahead log into the
   * database and truncates it: with `secure_delete`, the relayed text is then
   * gone from both files, not only from the table.
   */
  confirm(ids: number[]): void {
    const del = this.db.prepare("DELETE FROM outbox WHERE id = ?");
    this.db.transaction(() => {
      for (const id of ids) del.run(id);
    })();
    this.db.pragma("wal_checkpoint(TRUNCATE)");
  }

  queued(): number {
    return this.db.prepare<[], { n: number }>("SELECT count(*) AS n FROM outbox").get()!.n;
  }

  // ------------------------------------------------------------ puppets

  puppetName(senderId: string, network: NetworkName): string | undefined {
    return this.db
      .prepare<[string, string], { name: string }>("SELECT name FROM puppets WHERE sender_id = ? AND network = ?")
      .get(senderId, network)?.name;
  }

  setPuppetName(senderId: string, network: NetworkName, name: string): void {
    this.db
      .prepare(
        "INSERT INTO puppets (sender_id, network, name) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET name = excluded.name",
      )
      .run(senderId, network, name);
  }

  // ------------------------------------------------------------ refusals

  /** Records that a group was told, at this revision, that the bridge does not relay there; false if it was already. */
  noteRefusal(groupId: string, revision: number): boolean {
    const row = this.db
      .prepare<[string], { revision: number }>("SELECT revision FROM refusals WHERE group_id = ?")
      .get(groupId);
    if (row && row.revision === revision) return false;
    this.db
      .prepare(
        "INSERT INTO refusals (group_id, revision) VALUES (?, ?) ON CONFLICT DO UPDATE SET revision = excluded.revision",
      )
      .run(groupId, revision);
    return true;
  }
}

/** The bot is registered but its bridge store is gone: refuse to start (as a bot refuses without its device store). */
export class BridgeStoreMissingError extends Error {
  constructor(readonly path: string) {
    super(
      `The bridge's state ${path} is missing, though the bot in this directory is registered. ` +
        "It held which groups map to which channels and the messages not yet confirmed by the network; " +
        "restore it from a backup, or start the bridge in a new directory (a new bot account) and have group admins approve it again.",
    );
    this.name = "BridgeStoreMissingError";
  }
}
