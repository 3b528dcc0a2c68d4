import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { SqliteDeviceStore } from "../store/sqlite-store.js";
import { CliError } from "./cli-error.js";

/**
 * One device's directory: the SDK's SQLite store `device.db` (owner-only),
 * `contacts.json`, the usernames this device has looked up by account id
 * (envelopes name senders only by account id), and `attachments.json`,
 * which conversation holds each message with an attachment this device has
 * shown (so `download <id>` finds it; the attachment's key stays in the store),
 * and `outbox.json`, lines typed in `chat` that are not sent yet.
 */
export class Profile {
  readonly dir: string;
  readonly storePath: string;
  readonly contacts: Contacts;
  readonly attachments: AttachmentIndex;
  readonly outbox: Outbox;
  /** Whether {@link openNewStore} made the directory (so a failed attempt removes it again). */
  private createdDir = false;

  constructor(dir: string) {
    this.dir = resolve(dir);
    this.storePath = join(this.dir, "device.db");
    this.contacts = new Contacts(join(this.dir, "contacts.json"));
    this.attachments = new AttachmentIndex(join(this.dir, "attachments.json"));
    this.outbox = new Outbox(join(this.dir, "outbox.json"));
  }

  hasStore(): boolean {
    return existsSync(this.storePath);
  }

  /**
   * A new, empty store for a registration or link: refuses a profile that
   * already holds a device, and clears what an unfinished one left.
   * @throws CliError `already_registered`
   */
  openNewStore(): SqliteDeviceStore {
    if (!existsSync(this.dir)) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.createdDir = true;
      // Keys and contacts: never committed by accident when the profile is inside a git work tree (as a venv does).
      writeFileSync(join(this.dir, ".gitignore"), "# zimchat-chat profile: private keys and contacts\n*\n", {
        mode: 0o600,
      });
    }
    if (this.hasStore()) {
      const existing = new SqliteDeviceStore(this.storePath);
      const local = existing.getLocal();
      existing.close();
      if (local?.uuid)
        throw new CliError(
          "already_registered",
          `${this.dir} already holds ${local.username}'s device on ${local.serverUrl}: pass another --profile`,
        );
      this.removeStore();
    }
    return new SqliteDeviceStore(this.storePath);
  }

  /** Deletes the store (after a registration or link that did not finish). */
  removeStore(): void {
    for (const suffix of ["", "-wal", "-shm"]) rmSync(this.storePath + suffix, { force: true });
  }

  /**
   * Undoes a registration or link that did not finish: deletes the store,
   * and the profile directory too when {@link openNewStore} created it (a
   * directory that existed before is left, with whatever else it holds).
   */
  discardNewStore(): void {
    this.removeStore();
    if (!this.createdDir) return;
    this.createdDir = false;
    const left = readdirSync(this.dir).filter((name) => name !== ".gitignore");
    if (!left.length) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A string-to-string map in a small owner-only JSON file. */
class JsonMap {
  private entries: Record<string, string> | null = null;

  constructor(private readonly path: string) {}

  get(key: string): string | undefined {
    return this.load()[key];
  }

  keys(): string[] {
    return Object.keys(this.load());
  }

  set(key: string, value: string): void {
    const entries = this.load();
    if (entries[key] === value) return;
    entries[key] = value;
    mkdirSync(resolve(this.path, ".."), { recursive: true, mode: 0o700 });
    // Write then rename, so a crash never leaves half a file.
    const temporary = `${this.path}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(entries, null, 2)}\n`, { mode: 0o600 });
    renameSync(temporary, this.path);
  }

  private load(): Record<string, string> {
    if (!this.entries)
      this.entries = existsSync(this.path)
        ? (JSON.parse(readFileSync(this.path, "utf8")) as Record<string, string>)
        : {};
    return this.entries;
  }
}

/** Usernames by account id. */
export class Contacts {
  private readonly names: JsonMap;

  constructor(path: string) {
    this.names = new JsonMap(path);
  }

  /** The username for an account id, or the id itself when this device never looked it up. */
  nameOf(uuid: string): string {
    return this.names.get(uuid) ?? uuid;
  }

  remember(uuid: string, name: string): void {
    this.names.set(uuid, name);
  }

  /** Every account id with a known username. */
  uuids(): string[] {
    return this.names.keys();
  }
}

/** The conversation (an account id or `group:<id>`) of each message with an attachment, by message id. */
export class AttachmentIndex {
  private readonly conversations: JsonMap;

  constructor(path: string) {
    this.conversations = new JsonMap(path);
  }

  conversationOf(messageId: string): string | undefined {
    return this.conversations.get(messageId);
  }

  remember(messageId: string, conversation: string): void {
    this.conversations.set(messageId, conversation);
  }
}

/**
 * Lines typed in `chat` while the homeserver was unreachable, by
 * conversation (an account id or `group:<id>`), oldest first: plaintext
 * the user wrote, owner-only like the rest of the profile, deleted once sent.
 */
export class Outbox {
  private entries: Record<string, string[]> | null = null;

  constructor(private readonly path: string) {}

  /** The conversations with queued lines. */
  conversations(): string[] {
    return Object.keys(this.load());
  }

  pending(conversation: string): string[] {
    return [...(this.load()[conversation] ?? [])];
  }

  set(conversation: string, lines: string[]): void {
    const entries = this.load();
    if (lines.length) entries[conversation] = [...lines];
    else if (conversation in entries) delete entries[conversation];
    else return;
    const temporary = `${this.path}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(entries, null, 2)}\n`, { mode: 0o600 });
    renameSync(temporary, this.path);
  }

  private load(): Record<string, string[]> {
    if (!this.entries)
      this.entries = existsSync(this.path)
        ? (JSON.parse(readFileSync(this.path, "utf8")) as Record<string, string[]>)
        : {};
    return this.entries;
  }
}
