import type { Db } from "../db/database.js";

/** One account as the admin listing shows it. */
export interface AccountSummary {
  id: string;
  username: string;
  createdAt: Date;
  devices: number;
  disabled: boolean;
  attachmentBytes: number;
}

/** Row counts for the admin statistics. */
export interface StoredCounts {
  accounts: number;
  disabledAccounts: number;
  devices: number;
}

/** The queries of the admin API that no other store needs. */
export class AdminStore {
  constructor(private readonly db: Db) {}

  /** The account id for an id or a username, or null. */
  async resolve(ref: string): Promise<string | null> {
    const row = await this.db.account.findFirst({
      where: { OR: [{ id: ref }, { username: ref }] },
      select: { id: true },
    });
    return row?.id ?? null;
  }

  /** Up to `limit` accounts ordered by id, after `cursor`. */
  async listAccounts(cursor: string | undefined, limit: number): Promise<AccountSummary[]> {
    const rows = await this.db.account.findMany({
      where: cursor === undefined ? {} : { id: { gt: cursor } },
      orderBy: { id: "asc" },
      take: limit,
      select: { id: true, username: true, createdAt: true, disabledAt: true, _count: { select: { devices: true } } },
    });
    const sizes = rows.length
      ? await this.db.attachment.groupBy({
          by: ["accountId"],
          where: { accountId: { in: rows.map((r) => r.id) } },
          _sum: { size: true },
        })
      : [];
    const bytes = new Map(sizes.map((s) => [s.accountId, Number(s._sum.size ?? 0n)]));
    return rows.map((r) => ({
      id: r.id,
      username: r.username,
      createdAt: r.createdAt,
      devices: r._count.devices,
      disabled: r.disabledAt !== null,
      attachmentBytes: bytes.get(r.id) ?? 0,
    }));
  }

  /**
   * Disables (`at` a date) or enables (`null`) the account.
   * @returns whether the account exists
   */
  async setDisabled(accountId: string, at: Date | null): Promise<boolean> {
    const { count } = await this.db.account.updateMany({ where: { id: accountId }, data: { disabledAt: at } });
    return count === 1;
  }

  /**
   * Deletes the account row; its devices, keys, queued envelopes, linking
   * codes and attachment rows go with it (foreign keys cascade).
   * @returns the ids of the devices it had, or null when there was no such account
   */
  async deleteAccount(accountId: string): Promise<number[] | null> {
    return this.db.$transaction(async (tx) => {
      const devices = await tx.device.findMany({ where: { accountId }, select: { id: true }, orderBy: { id: "asc" } });
      const { count } = await tx.account.deleteMany({ where: { id: accountId } });
      return count === 1 ? devices.map((d) => d.id) : null;
    });
  }

  async counts(): Promise<StoredCounts> {
    const [accounts, disabledAccounts, devices] = await Promise.all([
      this.db.account.count(),
      this.db.account.count({ where: { disabledAt: { not: null } } }),
      this.db.device.count(),
    ]);
    return { accounts, disabledAccounts, devices };
  }
}
