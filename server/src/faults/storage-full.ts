import { statfsSync } from "node:fs";
import { HttpError } from "../errors.js";

/** Seconds a client is told to wait after a storage-full refusal. */
export const storageFullRetryAfterSeconds = 30;

// What a full disk looks like from each layer: Node's fs (ENOSPC, EDQUOT),
// SQLite (SQLITE_FULL, "database or disk is full"), PostgreSQL (SQLSTATE
// 53100 disk_full, "No space left on device" in its own messages); a code
// named in a message counts too (the attachment service reports "(ENOSPC)").
const fullCodes = new Set(["ENOSPC", "EDQUOT", "SQLITE_FULL", "53100"]);
const fullMessage =
  /SQLITE_FULL|database or disk is full|No space left on device|disk quota exceeded|\bdisk_full\b|\bENOSPC\b|\bEDQUOT\b/i;

/** Whether `error` (or an error in its `cause` chain, as Prisma wraps the driver's) says the storage is full. */
export function isStorageFull(error: unknown): boolean {
  for (
    let e = error, depth = 0;
    e && typeof e === "object" && depth < 6;
    e = (e as { cause?: unknown }).cause, depth++
  ) {
    const { code, message, originalCode } = e as { code?: unknown; message?: unknown; originalCode?: unknown };
    if (typeof code === "string" && fullCodes.has(code)) return true;
    if (typeof originalCode === "string" && fullCodes.has(originalCode)) return true;
    if (typeof message === "string" && fullMessage.test(message)) return true;
  }
  return false;
}

const listeners = new Set<() => void>();

/**
 * The answer to a request that failed because the disk (or PostgreSQL's) is
 * full: 507 `storage_full` with `Retry-After`. Nothing was committed, so the
 * client retries the same request later. Listeners (each app's
 * {@link StorageHealth}) hear of it, so `/readyz` turns not ready.
 */
export function storageFullError(error: unknown): HttpError | null {
  if (!isStorageFull(error)) return null;
  for (const listener of listeners) listener();
  return new HttpError(
    "storage_full",
    "The server's storage is full; nothing was stored. Try again later",
    { retryAfterSeconds: storageFullRetryAfterSeconds },
    { "Retry-After": String(storageFullRetryAfterSeconds) },
  );
}

/** Free bytes of the filesystem holding `path` (for an unprivileged writer), or null when it cannot be read. */
function freeBytes(path: string): number | null {
  try {
    const s = statfsSync(path);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/** Free space that counts as "room again" after a storage-full error. */
const roomBytes = 1024 * 1024;
/** With this much free, a storage-full error was not about this data directory's filesystem. */
const plentyBytes = 256 * 1024 * 1024;

/**
 * Whether the storage is full, for `/readyz`. Set by a storage-full error
 * (any request or socket event that hit one); cleared when the data
 * directory's filesystem has gained at least 1 MiB of free space since,
 * or, when the database is elsewhere (PostgreSQL), when no storage-full
 * error came for {@link storageFullRetryAfterSeconds}. Nothing polls: the
 * check runs when `/readyz` asks.
 */
export class StorageHealth {
  private fullAt: number | null = null;
  private freeAtFull: number | null = null;
  private readonly listener = (): void => this.noteFull();

  /**
   * @param dataDir the data directory (SQLite database, attachments)
   * @param databaseIsLocal whether the database lives in `dataDir` (SQLite)
   * @param onFull called when the storage turns full (not for every refused write): the operator's log line
   */
  constructor(
    private readonly dataDir: string,
    private readonly databaseIsLocal: boolean,
    private readonly onFull: () => void = () => {},
  ) {
    listeners.add(this.listener);
  }

  /** Records a storage-full error now. */
  noteFull(): void {
    const free = freeBytes(this.dataDir);
    // Several apps may share a process (tests): a full disk elsewhere is not this one's, unless the database is remote.
    if (this.databaseIsLocal && free !== null && free >= plentyBytes) return;
    const turning = this.fullAt === null;
    this.freeAtFull = turning ? free : Math.min(free ?? Infinity, this.freeAtFull ?? Infinity);
    this.fullAt = Date.now();
    if (turning) this.onFull();
  }

  /** Whether the storage still counts as full. */
  full(): boolean {
    if (this.fullAt === null) return false;
    const free = freeBytes(this.dataDir);
    const gained = free !== null && this.freeAtFull !== null && free - this.freeAtFull >= roomBytes;
    const quiet = Date.now() - this.fullAt >= storageFullRetryAfterSeconds * 1000;
    if (gained || (!this.databaseIsLocal && quiet)) {
      this.fullAt = null;
      this.freeAtFull = null;
    }
    return this.fullAt !== null;
  }

  /** Stops listening (the app closes). */
  close(): void {
    listeners.delete(this.listener);
  }
}
