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

/**
 * Attachment rows: who uploaded what size, until when. The quota check and
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
   * Inserts the row if the account's unexpired attachments plus this one stay
   * within `quotaBytes`.
   * @returns whether the row was inserted
   */
  async insertWithinQuota(row: AttachmentRow, quotaBytes: number): Promise<boolean> {
    return this.db.$transaction(async (tx) => {
      if (this.provider === "postgresql") await tx.$queryRaw`SELECT "id" FROM "Account" WHERE "id" = ${row.accountId} FOR UPDATE`;
      const used = await tx.attachment.aggregate({
        where: { accountId: row.accountId, expiresAt: { gt: BigInt(row.createdAt) } },
        _sum: { size: true },
      });
      if (Number(used._sum.size ?? 0n) + row.size > quotaBytes) return false;
      await tx.attachment.create({
        data: { id: row.id, accountId: row.accountId, size: BigInt(row.size), createdAt: BigInt(row.createdAt), expiresAt: BigInt(row.expiresAt) },
      });
      return true;
    });
  }

  /** Bytes of the account's attachments that have not expired at `now`. */
  async usage(accountId: string, now: number): Promise<number> {
    const used = await this.db.attachment.aggregate({ where: { accountId, expiresAt: { gt: BigInt(now) } }, _sum: { size: true } });
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
    const rows = await this.db.attachment.findMany({ where: { expiresAt: { lte: BigInt(now) } }, select: { id: true }, take: limit });
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

function toRow(row: { id: string; accountId: string; size: bigint; createdAt: bigint; expiresAt: bigint }): AttachmentRow {
  return { id: row.id, accountId: row.accountId, size: Number(row.size), createdAt: Number(row.createdAt), expiresAt: Number(row.expiresAt) };
}
