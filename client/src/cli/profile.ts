import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** The profile directory used when neither --profile nor ZIMCHAT_PROFILE names one. */
export const defaultProfileDir = "./.zimchat-chat";

/**
 * One device's directory: the SDK's SQLite store `device.db` (owner-only)
 * and `contacts.json`, the usernames this device has looked up by account
 * id (envelopes name senders only by account id).
 */
export class Profile {
  readonly dir: string;
  readonly storePath: string;
  readonly contacts: Contacts;

  constructor(dir: string) {
    this.dir = resolve(dir);
    this.storePath = join(this.dir, "device.db");
    this.contacts = new Contacts(join(this.dir, "contacts.json"));
  }

  hasStore(): boolean {
    return existsSync(this.storePath);
  }

  /** Deletes the store (after a registration the server refused). */
  removeStore(): void {
    for (const suffix of ["", "-wal", "-shm"]) rmSync(this.storePath + suffix, { force: true });
  }
}

/** Usernames by account id, kept in a small owner-only JSON file. */
export class Contacts {
  private names: Record<string, string> | null = null;

  constructor(private readonly path: string) {}

  /** The username for an account id, or the id itself when this device never looked it up. */
  nameOf(uuid: string): string {
    return this.load()[uuid] ?? uuid;
  }

  remember(uuid: string, name: string): void {
    const names = this.load();
    if (names[uuid] === name) return;
    names[uuid] = name;
    mkdirSync(resolve(this.path, ".."), { recursive: true, mode: 0o700 });
    // Write then rename, so a crash never leaves half a file.
    const temporary = `${this.path}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(names, null, 2)}\n`, { mode: 0o600 });
    renameSync(temporary, this.path);
  }

  private load(): Record<string, string> {
    if (!this.names) this.names = existsSync(this.path) ? (JSON.parse(readFileSync(this.path, "utf8")) as Record<string, string>) : {};
    return this.names;
  }
}
