import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { attachmentIdBytes, attachmentIdSchema, type UploadAttachmentResponse } from "@zimchat/protocol";
import { HttpError } from "../errors.js";
import type { RefusalCounter } from "../http/json-body.js";
import { pendingSuffix, type AttachmentStore } from "../stores/attachment-store.js";
import type { DevicePrincipal } from "./account-service.js";

/** What the attachment service needs from the server's config. */
export interface AttachmentOptions {
  /** Where the blobs live (`<dataDir>/attachments`). */
  dir: string;
  /** Bytes of one upload. */
  maxBytes: number;
  /** Bytes of one account's unexpired uploads together. */
  quotaBytes: number;
  /** How long a blob is kept after its upload. */
  ttlMs: number;
  /** Uploads one account may have in flight (across nodes). @default unlimited */
  maxConcurrentUploads?: number;
  /** Unexpired attachments one account may hold, zero-byte ones included. @default unlimited */
  maxCount?: number;
  /** An upload that sends nothing for this long is cut off. @default 30 s */
  idleMs?: number;
  /** Average bytes per second an upload must keep after its first idle window (0: none). @default 0 */
  minBytesPerSecond?: number;
  /** Counts refusals (`/metrics`). */
  refusals?: RefusalCounter;
}

/** The upload's source ended before its last byte (the client went away): nothing was stored. */
export class UploadAbortedError extends Error {
  override name = "UploadAbortedError";
}

/** An uploaded blob ready to be served: its file and size. */
export interface StoredAttachment {
  path: string;
  size: number;
}

/** A partial upload (`<id>.part`) older than this is left over from a crash. */
const staleUploadMs = 24 * 3600 * 1000;
/** A blob file without a row older than this is an orphan (a crash between the rename and the insert). */
const orphanGraceMs = 3600 * 1000;
/** Orphans are looked for at most this often (a directory listing plus lookups). */
const orphanScanEveryMs = 3600 * 1000;
const sweepBatch = 500;

/**
 * Encrypted attachments. The server only ever sees the client's ciphertext
 * (padded to a size bucket by the client); it stores it as one file per
 * attachment, named by its random id, and the row that says whose it is and
 * until when.
 *
 * An upload streams to `<id>.part` (never held in memory), counting bytes
 * against the per-file cap and the account's quota as they arrive; only a
 * complete upload is flushed to disk, renamed into place and recorded. Any
 * failure (a refusal, the client going away, a disk error) removes the
 * partial file, so it leaves neither a file nor a row.
 */
export class AttachmentService {
  private ready: Promise<unknown> | null = null;
  private lastOrphanScan = 0;

  constructor(
    private readonly store: AttachmentStore,
    private readonly options: AttachmentOptions,
  ) {}

  /**
   * Streams `source` to disk and records it. Before a byte is read, the
   * upload reserves its declared size (chunked: what the account has left,
   * up to the per-file cap) against the quota, the count cap and the cap on
   * uploads in flight, in the database (see {@link AttachmentStore.reserve}),
   * so concurrent uploads cannot overshoot the quota. An upload that stalls
   * (`idleMs` without a byte) or trickles (under `minBytesPerSecond` on
   * average after the first idle window) is cut off. Any failure removes the
   * partial file and releases the reservation. The source is read through an
   * iterator that does not destroy it on a refusal, so the caller can still
   * answer on its connection.
   * @throws HttpError `body_too_large`, `quota_exceeded`, `too_many_uploads`, `too_many_attachments` or
   *   `upload_timeout` (nothing stored)
   * @throws UploadAbortedError when the source ends early (nothing stored)
   */
  async upload(
    principal: DevicePrincipal,
    source: Readable,
    declaredBytes?: number,
  ): Promise<UploadAttachmentResponse> {
    const { maxBytes, quotaBytes } = this.options;
    const idleMs = this.options.idleMs ?? 30_000;
    const minRate = this.options.minBytesPerSecond ?? 0;
    if (declaredBytes !== undefined && declaredBytes > maxBytes) throw this.refuse(this.tooLarge());
    const id = randomBytes(attachmentIdBytes).toString("base64url");
    const pendingId = `${id}${pendingSuffix}`;
    const started = Date.now();
    const outcome = await this.store.reserve({
      id: pendingId,
      accountId: principal.accountId,
      now: started,
      declaredBytes,
      maxBytes,
      quotaBytes,
      maxCount: this.options.maxCount ?? Number.MAX_SAFE_INTEGER,
      maxConcurrent: this.options.maxConcurrentUploads ?? Number.MAX_SAFE_INTEGER,
      // Long enough for an upload at the minimum rate; a reservation outliving it was left by a crashed node.
      leaseMs: (bytes) => 2 * idleMs + (minRate > 0 ? Math.ceil((bytes / minRate) * 1000) : staleUploadMs),
    });
    if ("refused" in outcome) throw this.refuse(refusal(outcome.refused));
    const reserved = outcome.reserved;

    const partial = join(this.options.dir, pendingId);
    const final = join(this.options.dir, id);
    let bytes = 0;
    // Both restart when the first byte is awaited (after the reservation and the file are ready).
    let lastByteAt = started;
    let readingSince = started;
    // Cuts off a stalled or trickling upload (the pipeline fails with upload_timeout).
    let watchdog: NodeJS.Timeout | undefined;
    const stopWatchdog = (): void => clearInterval(watchdog);
    // Chunked: the reservation is the cap (the per-file cap, or what was left of the quota).
    const overCap = reserved >= maxBytes ? this.tooLarge() : quotaExceeded();
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        lastByteAt = Date.now();
        if (bytes > reserved) callback(overCap);
        else callback(null, chunk);
      },
      // Every byte is in: the final fsync is not the client's stall.
      flush(callback) {
        stopWatchdog();
        callback();
      },
    });
    const watch = (): void => {
      lastByteAt = readingSince = Date.now();
      watchdog = setInterval(
        () => {
          const now = Date.now();
          const idle = now - lastByteAt > idleMs;
          const slow =
            minRate > 0 && now - readingSince > idleMs && bytes < (minRate * (now - readingSince - idleMs)) / 1000;
          if (!idle && !slow) return;
          stopWatchdog();
          counter.destroy(uploadTimeout(idleMs, minRate));
        },
        Math.max(50, Math.min(1000, idleMs / 4)),
      );
      watchdog.unref();
    };
    let handle;
    try {
      await (this.ready ??= mkdir(this.options.dir, { recursive: true, mode: 0o700 }).catch((error: unknown) => {
        this.ready = null; // try again on the next upload
        throw error;
      }));
      // The file exists before the first byte, so a failure at any point removes it.
      handle = await open(partial, "wx", 0o600);
      watch();
      // flush: fsync before close, so a 201 means the bytes are on disk.
      await pipeline(source.iterator({ destroyOnReturn: false }), counter, handle.createWriteStream({ flush: true }));
    } catch (error) {
      stopWatchdog();
      await handle?.close().catch(() => undefined);
      await this.store.release(pendingId).catch(() => undefined); // else its lease expires, and the sweep removes both
      await rm(partial, { force: true });
      if (error instanceof HttpError) throw this.refuse(error);
      if (source.readableAborted || (error as NodeJS.ErrnoException).code === "ECONNRESET") {
        throw new UploadAbortedError("the upload ended before its last byte", { cause: error });
      }
      // A disk error (logged as a 500): its code only, since its path names the id.
      // eslint-disable-next-line preserve-caught-error -- the cause's message holds that path
      throw new Error(`writing an attachment failed (${(error as NodeJS.ErrnoException).code ?? "unknown"})`);
    } finally {
      stopWatchdog();
    }
    await rename(partial, final);
    await this.syncDir();

    const createdAt = Date.now();
    const row = {
      id,
      accountId: principal.accountId,
      size: bytes,
      createdAt,
      expiresAt: createdAt + this.options.ttlMs,
    };
    let stored = false;
    try {
      // The reservation becomes the row; if its lease ran out meanwhile, the quota is checked afresh.
      stored = (await this.store.commit(pendingId, row)) || (await this.store.insertWithinQuota(row, quotaBytes));
    } finally {
      if (!stored) await rm(final, { force: true });
    }
    if (!stored) throw this.refuse(quotaExceeded());
    return { id, size: bytes, expiresAt: row.expiresAt };
  }

  /**
   * The blob of an unexpired attachment, for any authenticated device (the
   * id is the capability).
   * @throws HttpError `not_found`
   */
  async open(id: string): Promise<StoredAttachment> {
    const row = attachmentIdSchema.safeParse(id).success ? await this.store.findLive(id, Date.now()) : null;
    if (!row) throw notFound();
    return { path: join(this.options.dir, row.id), size: row.size };
  }

  /** Bytes of the account's unexpired attachments (what counts against its quota). */
  async usage(accountId: string): Promise<number> {
    return this.store.usage(accountId, Date.now());
  }

  /**
   * Deletes expired attachments (rows, then files) and, at most hourly,
   * files left behind by a crash: stale partial uploads and blobs without a
   * row.
   */
  async sweep(now = Date.now()): Promise<{ expired: number; orphans: number }> {
    let expired = 0;
    for (;;) {
      const ids = await this.store.deleteExpired(now, sweepBatch);
      await this.removeFiles(ids);
      expired += ids.length;
      if (ids.length < sweepBatch) break;
    }
    let orphans = 0;
    if (now - this.lastOrphanScan >= orphanScanEveryMs) {
      this.lastOrphanScan = now;
      orphans = await this.sweepOrphans(now);
    }
    return { expired, orphans };
  }

  /**
   * Deletes every attachment an account uploaded, rows and files. Call it
   * before deleting the account: the rows would go with the account
   * (cascade), the files would not (until the hourly orphan scan).
   * @returns how many were deleted
   */
  async deleteForAccount(accountId: string): Promise<number> {
    const ids = await this.store.deleteForAccount(accountId);
    await this.removeFiles(ids);
    return ids.length;
  }

  private async sweepOrphans(now: number): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.options.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw error;
    }
    const olderThan = async (name: string, ms: number): Promise<boolean> => {
      const info = await stat(join(this.options.dir, name)).catch(() => null);
      return info !== null && now - info.mtimeMs > ms;
    };
    let removed = 0;
    for (const name of names.filter((n) => n.endsWith(".part"))) {
      if (await olderThan(name, staleUploadMs)) {
        await rm(join(this.options.dir, name), { force: true });
        removed++;
      }
    }
    const blobs = names.filter((n) => attachmentIdSchema.safeParse(n).success);
    for (let i = 0; i < blobs.length; i += sweepBatch) {
      const batch = blobs.slice(i, i + sweepBatch);
      const known = await this.store.existing(batch);
      for (const name of batch.filter((n) => !known.has(n))) {
        if (await olderThan(name, orphanGraceMs)) {
          await rm(join(this.options.dir, name), { force: true });
          removed++;
        }
      }
    }
    return removed;
  }

  private async removeFiles(ids: string[]): Promise<void> {
    for (const id of ids) await rm(join(this.options.dir, id), { force: true });
  }

  /** Makes the rename durable. */
  private async syncDir(): Promise<void> {
    const dir = await open(this.options.dir, "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** Counts a refusal in `/metrics` by its code, and returns it to be thrown. */
  private refuse(error: HttpError): HttpError {
    this.options.refusals?.refused(error.code);
    return error;
  }

  private tooLarge(): HttpError {
    return new HttpError("body_too_large", `An attachment is at most ${this.options.maxBytes} bytes`);
  }
}

function quotaExceeded(): HttpError {
  return new HttpError("quota_exceeded", "This upload would exceed the account's attachment storage quota");
}

function refusal(code: "quota_exceeded" | "too_many_attachments" | "too_many_uploads"): HttpError {
  if (code === "quota_exceeded") return quotaExceeded();
  if (code === "too_many_uploads")
    return new HttpError(
      "too_many_uploads",
      "This account has as many uploads in flight as it may: retry when one ends",
    );
  return new HttpError(
    "too_many_attachments",
    "This account holds as many attachments as it may: retry when some expire",
  );
}

function uploadTimeout(idleMs: number, minRate: number): HttpError {
  // The client is stalled: close the connection after the answer rather than wait for the rest of the body.
  return new HttpError(
    "upload_timeout",
    `The upload stalled (no byte for ${idleMs} ms, or under ${minRate} bytes/s on average)`,
    {},
    { Connection: "close" },
  );
}

function notFound(): HttpError {
  return new HttpError("not_found", "No such attachment (unknown or expired)");
}
