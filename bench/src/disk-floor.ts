/**
 * The disk's floor under the homeserver's latency: how long one SQLite commit
 * takes on the filesystem of the homeserver's data directory, with the
 * homeserver's own settings (WAL, `synchronous=FULL`: an fsync of the WAL
 * per commit). No envelope can be pushed sooner than its commit, so the
 * homeserver's latency percentiles cannot be under this one's; the relay
 * writes nothing and has no such floor.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { percentile } from "./stats.js";

/** One measurement, in milliseconds. */
export interface DiskFloor {
  commits: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * Times `commits` single-row commits (a 400-byte row, about one envelope) of a
 * scratch database in `dir`, one after another, then deletes it.
 */
export function measureDiskFloor(dir: string, commits = 300): DiskFloor {
  const path = join(dir, `disk-floor-${process.pid}.db`);
  const db = new Database(path);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    const row = Buffer.alloc(400, 0xa5);
    const times: number[] = [];
    for (let i = 0; i < commits; i++) {
      const started = performance.now();
      insert.run(row);
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    return {
      commits,
      p50Ms: percentile(times, 50),
      p99Ms: percentile(times, 99),
      maxMs: times[times.length - 1]!,
    };
  } finally {
    db.close();
    for (const suffix of ["", "-wal", "-shm"]) rmSync(path + suffix, { force: true });
  }
}
