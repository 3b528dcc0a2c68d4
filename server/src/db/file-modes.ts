import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Makes a SQLite database private to the server's user before SQLite opens
 * it: its directory is created 0700 when missing, the file is created (or
 * changed to) 0600, and so are existing `-wal`/`-shm` files. SQLite creates
 * new `-wal` and `-shm` files with the database file's permissions, so they
 * stay 0600 too, whatever the process umask.
 */
export function makeSqliteFilesPrivate(path: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!existsSync(path)) closeSync(openSync(path, "a", 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    if (existsSync(file)) chmodSync(file, 0o600);
  }
}
