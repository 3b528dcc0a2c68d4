import type { Db } from "../db/database.js";

type Provider = "sqlite" | "postgresql";

/** One stored attachment blob's row (the bytes live in a file named by the id). */
export interface AttachmentRow {
  id: string;
  accountId: string;
  /** Stored (ciphertext) bytes. */
  size: number;
  /** ms since the epoch */
  createdAt: number;
  /** ms since the epoch */
  expiresAt: number;
}

/** The suffix of an upload in flight: its reservation row's id and its partial file's name are `<id>.part`. */
export const pendingSuffix = ".part";

/** What {@link AttachmentStore.reserve} needs: the caps and the upload. */
export interface Reservation {
  /** The reservation row's id: `<attachment id>.part` (also the partial file's name). */
  id: string;
  accountId: string;
  /** ms since the epoch */
  now: number;
  /** Declared bytes; undefined (chunked): all the account has left, up to `maxBytes`. */
  declaredBytes: number | undefined;
  maxBytes: number;
  quotaBytes: number;
  /** Unexpired attachments of the account, reservations included. */
  maxCount: number;
  /** Reservations (uploads in flight) of the account. */
  maxConcurrent: number;
  /**
   * How long a reservation of `bytes` may live (after that it is swept with its partial file: a node that crashed
   * mid-upload).
   */
  leaseMs: (bytes: number) => number;
}

/** The outcome of a reservation: the bytes reserved, or which cap refused it. */
export type ReserveOutcome =
  { reserved: number } | { refused: "quota_exceeded" | "too_many_attachments" | "too_many_uploads" };

/**
 * Attachment rows: who uploaded what size, until when. An upload in flight
 * is a reservation row (`<id>.part`, the bytes it may still write, a short
 * lease as expiry) that counts against the quota and the caps from the
 * moment the upload starts. The quota check and
 * the insert run in one transaction that holds the uploader's account row
 * (`FOR UPDATE` on PostgreSQL; SQLite has a single writer), so concurrent
 * uploads of one account cannot overspend its quota, on any number of nodes.
 */
export class AttachmentStore {
  constructor(
    private readonly db: Db,
    private readonly provider: Provider,
  ) {}

  /**
   * Reserves quota for an upload about to start: in one transaction that
   * holds the account row (as {@link insertWithinQuota}), checks the
   * account's uploads in flight, its unexpired attachments (reservations
   * included) and its bytes (reservations included), and inserts the
   * reservation row. So concurrent uploads cannot overshoot the quota, on
   * any number of nodes sharing the database.
   */
  async reserve(r: Reservation): Promise<ReserveOutcome> {
    return this.db.$transaction(async (tx) => {
      if (this.provider === "postgresql")
        await tx.$queryRaw`SELECT "id" FROM "Account" WHERE "id" = ${r.accountId} FOR UPDATE`;
      const live = { accountId: r.accountId, expiresAt: { gt: BigInt(r.now) } };
      const inFlight = await tx.attachment.count({ where: { ...live, id: { endsWith: pendingSuffix } } });
      if (inFlight >= r.maxConcurrent) return { refused: "too_many_uploads" as const };
      const used = await tx.attachment.aggregate({ where: live, _sum: { size: true }, _count: true });
      if (used._count >= r.maxCount) return { refused: "too_many_attachments" as const };
      const left = r.quotaBytes - Number(used._sum.size ?? 0n);
      const reserved = r.declaredBytes ?? Math.min(r.maxBytes, left);
      if (reserved > left || (r.declaredBytes === undefined && left <= 0))
        return { refused: "quota_exceeded" as const };
      await tx.attachment.create({
        data: {
          id: r.id,
          accountId: r.accountId,
          size: BigInt(reserved),
          createdAt: BigInt(r.now),
          expiresAt: BigInt(r.now + r.leaseMs(reserved)),
        },
      });
      return { reserved };
    });
  }

  /**
   * Turns a reservation into the stored attachment's row (its final id,
   * size and expiry), in place: the bytes were reserved, so the quota holds.
   * @returns false if the reservation was gone (its lease expired and it was swept)
   */
  async commit(reservationId: string, row: AttachmentRow): Promise<boolean> {
    const { count } = await this.db.attachment.updateMany({
      where: { id: reservationId },
      data: { id: row.id, size: BigInt(row.size), createdAt: BigInt(row.createdAt), expiresAt: BigInt(row.expiresAt) },
    });
    return count === 1;
  }

  /** Drops a reservation (the upload failed or was refused). */
  async release(reservationId: string): Promise<void> {
    await this.db.attachment.deleteMany({ where: { id: reservationId } });
  }

  /**
   * Inserts the row if the account's unexpired attachments plus this one stay
   * within `quotaBytes`.
   * @returns whether the row was inserted
   */
  async insertWithinQuota(row: AttachmentRow, quotaBytes: number): Promise<boolean> {
    return this.db.$transaction(async (tx) => {
      if (this.provider === "postgresql")
        await tx.$queryRaw`SELECT "id" FROM "Account" WHERE "id" = ${row.accountId} FOR UPDATE`;
      const used = await tx.attachment.aggregate({
        where: { accountId: row.accountId, expiresAt: { gt: BigInt(row.createdAt) } },
        _sum: { size: true },
      });
      if (Number(used._sum.size ?? 0n) + row.size > quotaBytes) return false;
      await tx.attachment.create({
        data: {
          id: row.id,
          accountId: row.accountId,
          size: BigInt(row.size),
          createdAt: BigInt(row.createdAt),
          expiresAt: BigInt(row.expiresAt),
        },
      });
      return true;
    });
  }

  /** Bytes of the account's attachments that have not expired at `now`. */
  async usage(accountId: string, now: number): Promise<number> {
    const used = await this.db.attachment.aggregate({
      where: { accountId, expiresAt: { gt: BigInt(now) } },
      _sum: { size: true },
    });
    return Number(used._sum.size ?? 0n);
  }

  /** The row of an attachment that has not expired at `now`, or null. */
  async findLive(id: string, now: number): Promise<AttachmentRow | null> {
    const row = await this.db.attachment.findFirst({ where: { id, expiresAt: { gt: BigInt(now) } } });
    return row && toRow(row);
  }

  /** Which of these ids have a row (expired or not). */
  async existing(ids: string[]): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const rows = await this.db.attachment.findMany({ where: { id: { in: ids } }, select: { id: true } });
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Deletes up to `limit` rows that expired at or before `now`.
   * @returns the ids deleted (their files are the caller's to remove)
   */
  async deleteExpired(now: number, limit: number): Promise<string[]> {
    const rows = await this.db.attachment.findMany({
      where: { expiresAt: { lte: BigInt(now) } },
      select: { id: true },
      take: limit,
    });
    return this.deleteIds(rows.map((r) => r.id));
  }

  /**
   * Deletes every row of an account.
   * @returns the ids deleted (their files are the caller's to remove)
   */
  async deleteForAccount(accountId: string): Promise<string[]> {
    const rows = await this.db.attachment.findMany({ where: { accountId }, select: { id: true } });
    return this.deleteIds(rows.map((r) => r.id));
  }

  private async deleteIds(ids: string[]): Promise<string[]> {
    if (ids.length) await this.db.attachment.deleteMany({ where: { id: { in: ids } } });
    return ids;
  }
}

function toRow(row: {
  id: string;
  accountId: string;
  size: bigint;
  createdAt: bigint;
  expiresAt: bigint;
}): AttachmentRow {
  return {
    id: row.id,
    accountId: row.accountId,
    size: Number(row.size),
    createdAt: Number(row.createdAt),
    expiresAt: Number(row.expiresAt),
  };
}
