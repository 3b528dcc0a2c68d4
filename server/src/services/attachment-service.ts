import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { attachmentIdBytes, attachmentIdSchema, type UploadAttachmentResponse } from "@zimchat/protocol";
import { HttpError } from "../errors.js";
import type { AttachmentStore } from "../stores/attachment-store.js";
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
   * Refuses an upload from what its headers declare, before any byte is read.
   * @returns the bytes the account already uses
   * @throws HttpError `body_too_large` or `quota_exceeded`
   */
  async checkDeclared(principal: DevicePrincipal, declaredBytes: number | undefined, now = Date.now()): Promise<number> {
    if (declaredBytes !== undefined && declaredBytes > this.options.maxBytes) throw this.tooLarge();
    const used = await this.store.usage(principal.accountId, now);
    if (used + (declaredBytes ?? 0) > this.options.quotaBytes || used >= this.options.quotaBytes) throw quotaExceeded();
    return used;
  }

  /**
   * Streams `source` to disk and records it. The source is read through an
   * iterator that does not destroy it on a refusal, so the caller can still
   * answer on its connection.
   * @throws HttpError `body_too_large` or `quota_exceeded` (nothing stored)
   * @throws UploadAbortedError when the source ends early (nothing stored)
   */
  async upload(principal: DevicePrincipal, source: Readable, declaredBytes?: number): Promise<UploadAttachmentResponse> {
    const started = Date.now();
    const used = await this.checkDeclared(principal, declaredBytes, started);
    await (this.ready ??= mkdir(this.options.dir, { recursive: true, mode: 0o700 }).catch((error: unknown) => {
      this.ready = null; // try again on the next upload
      throw error;
    }));

    const id = randomBytes(attachmentIdBytes).toString("base64url");
    const partial = join(this.options.dir, `${id}.part`);
    const final = join(this.options.dir, id);
    const { maxBytes, quotaBytes } = this.options;
    let bytes = 0;
    const tooLarge = this.tooLarge();
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        if (bytes > maxBytes) callback(tooLarge);
        else if (used + bytes > quotaBytes) callback(quotaExceeded());
        else callback(null, chunk);
      },
    });
    // The file exists before the first byte, so a failure at any point removes it.
    const handle = await open(partial, "wx", 0o600);
    try {
      // flush: fsync before close, so a 201 means the bytes are on disk.
      await pipeline(source.iterator({ destroyOnReturn: false }), counter, handle.createWriteStream({ flush: true }));
    } catch (error) {
      await handle.close().catch(() => undefined);
      await rm(partial, { force: true });
      if (error instanceof HttpError) throw error;
      if (source.readableAborted || (error as NodeJS.ErrnoException).code === "ECONNRESET") {
        throw new UploadAbortedError("the upload ended before its last byte", { cause: error });
      }
      // A disk error (logged as a 500): its code only, since its path names the id.
      throw new Error(`writing an attachment failed (${(error as NodeJS.ErrnoException).code ?? "unknown"})`);
    }
    await rename(partial, final);
    await this.syncDir();

    const createdAt = Date.now();
    const row = { id, accountId: principal.accountId, size: bytes, createdAt, expiresAt: createdAt + this.options.ttlMs };
    let inserted = false;
    try {
      inserted = await this.store.insertWithinQuota(row, quotaBytes);
    } finally {
      if (!inserted) await rm(final, { force: true });
    }
    // A concurrent upload of the same account took the rest of the quota.
    if (!inserted) throw quotaExceeded();
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

  private tooLarge(): HttpError {
    return new HttpError("body_too_large", `An attachment is at most ${this.options.maxBytes} bytes`);
  }
}

function quotaExceeded(): HttpError {
  return new HttpError("quota_exceeded", "This upload would exceed the account's attachment storage quota");
}

function notFound(): HttpError {
  return new HttpError("not_found", "No such attachment (unknown or expired)");
}
