import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import type { StorageAdapter } from "./session.js";

/**
 * Sessions in a SQLite file (JSON values; WAL, owner-only like the device
 * store, since sessions can hold what users wrote). Survives restarts.
 * @example bot.use(session({ initial: () => ({ reminders: [] }), storage: new SqliteSessionStorage(join(dir,
 * "sessions.db")) }));
 */
export class SqliteSessionStorage<T> implements StorageAdapter<T> {
  private readonly db: BetterSqlite3.Database;
  private readonly statements: {
    read: BetterSqlite3.Statement;
    write: BetterSqlite3.Statement;
    remove: BetterSqlite3.Statement;
    keys: BetterSqlite3.Statement;
  };

  /**
   * @param path the database file (created, mode 0600)
   * @param table the table to use (several storages can share a file) @default "sessions"
   */
  constructor(path: string, table = "sessions") {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new Error(`"${table}" is not a table name`);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    closeSync(openSync(path, "a", 0o600));
    chmodSync(path, 0o600);
    this.db = new BetterSqlite3(path);
    this.db.pragma("journal_mode = WAL");
    this.db.exec(`CREATE TABLE IF NOT EXISTS ${table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.statements = {
      read: this.db.prepare(`SELECT value FROM ${table} WHERE key = ?`),
      write: this.db.prepare(
        `INSERT INTO ${table} (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      ),
      remove: this.db.prepare(`DELETE FROM ${table} WHERE key = ?`),
      keys: this.db.prepare(`SELECT key FROM ${table} ORDER BY key`),
    };
  }

  read(key: string): T | undefined {
    const row = this.statements.read.get(key) as { value: string } | undefined;
    return row ? (JSON.parse(row.value) as T) : undefined;
  }
  write(key: string, value: T): void {
    this.statements.write.run(key, JSON.stringify(value));
  }
  delete(key: string): void {
    this.statements.remove.run(key);
  }
  keys(): string[] {
    return (this.statements.keys.all() as { key: string }[]).map((r) => r.key);
  }

  close(): void {
    this.db.close();
  }
}
