import { randomBytes } from "node:crypto";
import { closeSync, copyFileSync, existsSync, fsyncSync, linkSync, openSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { readMigrations } from "./migrate.js";

/** Why a backup file cannot be restored, or why not now; the message says what to do. */
export class RestoreError extends Error {
  override name = "RestoreError";
}

/**
 * Copies a live SQLite database into `destination` with SQLite's online
 * backup API, on a connection of its own: the copy is one consistent
 * snapshot while the server keeps writing (the backup restarts its pages
 * when a write lands between steps).
 */
export async function backupSqlite(databasePath: string, destination: string): Promise<void> {
  const source = new BetterSqlite3(databasePath, { fileMustExist: true, timeout: 5000 });
  try {
    await source.backup(destination);
  } finally {
    source.close();
  }
}

/**
 * Checks that `file` is a sound ZimChat SQLite database: `PRAGMA
 * integrity_check` passes and its migration history holds only migrations
 * this version knows (at least the first).
 * @throws RestoreError saying what is wrong
 */
export function checkSqliteBackup(file: string): void {
  let db: BetterSqlite3.Database;
  try {
    db = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new RestoreError(`${file} cannot be opened as a SQLite database`, { cause: error });
  }
  try {
    let problems: string[];
    try {
      problems = (db.pragma("integrity_check") as { integrity_check: string }[]).map((r) => r.integrity_check);
    } catch (error) {
      throw new RestoreError(`${file} is not a SQLite database`, { cause: error });
    }
    if (problems.length !== 1 || problems[0] !== "ok")
      throw new RestoreError(`${file} fails SQLite's integrity check: ${problems.slice(0, 3).join("; ")}`);
    let applied: string[];
    try {
      applied = (
        db.prepare(`SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL`).all() as {
          migration_name: string;
        }[]
      ).map((r) => r.migration_name);
    } catch (error) {
      throw new RestoreError(`${file} has no ZimChat migration history: it is not a ZimChat database`, {
        cause: error,
      });
    }
    const known = readMigrations("sqlite").map((m) => m.name);
    const unknown = applied.filter((name) => !known.includes(name));
    if (unknown.length)
      throw new RestoreError(
        `${file} has migration ${unknown[0]}, which this version does not know: restore it with the version that made it`,
      );
    if (!applied.includes(known[0]!))
      throw new RestoreError(`${file} has no ZimChat migration history: it is not a ZimChat database`);
  } finally {
    db.close();
  }
}

/** Where {@link restoreSqlite} put things. */
export interface RestoreResult {
  /** The database that was replaced, kept beside it (null when there was none). */
  previous: string | null;
}

/**
 * Puts a backup in place of the database at `databasePath`, with the
 * server stopped: checks the backup ({@link checkSqliteBackup}), keeps the
 * current database as `<name>.before-restore-<time>`, moves a copy of the
 * backup in with one rename and removes the old `-wal` and `-shm` files.
 * A `-wal` file, even an empty one, means a server still has the database
 * open (or did not shut down cleanly, which its next start repairs): refused
 * unless `force`.
 * @throws RestoreError for a bad backup or a database in use
 */
export function restoreSqlite(
  backupFile: string,
  databasePath: string,
  options: { force?: boolean; now?: Date } = {},
): RestoreResult {
  checkSqliteBackup(backupFile);
  const wal = `${databasePath}-wal`;
  // SQLite keeps the -wal file while any connection has the database open (the server's periodic TRUNCATE
  // checkpoints leave it empty, not gone) and deletes it when the last one closes cleanly: its presence is the sign.
  if (!options.force && existsSync(wal)) {
    throw new RestoreError(
      `${wal} exists: a server still has this database open (or stopped uncleanly). Stop the server (start and stop it once after a crash), or pass --force`,
    );
  }
  const temp = join(dirname(databasePath), `.restore-${randomBytes(6).toString("hex")}.tmp`);
  copyFileSync(backupFile, temp);
  const fd = openSync(temp, "r+");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  let previous: string | null = null;
  if (existsSync(databasePath)) {
    previous = `${databasePath}.before-restore-${(options.now ?? new Date()).toISOString().replace(/[:.]/g, "-")}`;
    // A hard link keeps the current file under its new name without a second copy; the rename below swaps the name
    // atomically.
    try {
      linkSync(databasePath, previous);
    } catch {
      copyFileSync(databasePath, previous);
    }
  }
  for (const stale of [wal, `${databasePath}-shm`]) rmSync(stale, { force: true });
  renameSync(temp, databasePath);
  return { previous };
}
