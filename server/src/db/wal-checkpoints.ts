import type { Db } from "./database.js";

/** A running checkpoint timer. */
export interface WalCheckpoints {
  stop(): void;
}

/**
 * Checkpoints SQLite's write-ahead log every `intervalMs` and truncates it
 * to zero bytes (`PRAGMA wal_checkpoint(TRUNCATE)`). With `secure_delete`
 * on, a deleted row is zeroed in the page written to the WAL, but earlier
 * WAL frames still hold the row as it was inserted, and the main file holds
 * it until the zeroed page is checkpointed. SQLite's own auto-checkpoint
 * (every 1000 pages) copies pages back but never shortens the WAL, so old
 * frames stay readable in a copy of the files. A truncating checkpoint ends
 * both: the zeroed pages reach the main file and the WAL file is emptied.
 * Cost: one checkpoint (page writes and an fsync) per interval, measured in
 * the bench. A checkpoint that cannot finish (another process reading) is
 * retried at the next interval; failures never reach requests.
 */
export function startWalCheckpoints(
  prisma: Db,
  intervalMs: number,
  onError: (error: unknown) => void,
  inWorker = false,
): WalCheckpoints {
  let running = false;
  const timer = setInterval(() => {
    // One at a time: a slow disk must not queue checkpoints up.
    if (running) return;
    running = true;
    // A checkpoint in the middle of a write transaction fails with SQLITE_LOCKED. The storage worker's adapter runs a
    // PRAGMA alone, after the open group commits; the in-thread adapter waits for open transactions only when
    // asked for one (deferred and empty, so it takes no lock itself).
    const pragma = "PRAGMA wal_checkpoint(TRUNCATE)";
    (inWorker ? prisma.$queryRawUnsafe(pragma) : prisma.$transaction((tx) => tx.$queryRawUnsafe(pragma))).then(
      () => (running = false),
      (error: unknown) => {
        running = false;
        onError(error);
      },
    );
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
