import type { Bytes, Db } from "../db/database.js";

/** An invite as listed to admins (never its token). */
export interface InviteInfo {
  id: string;
  maxUses: number;
  uses: number;
  expiresAt: Date;
  createdAt: Date;
  revokedAt: Date | null;
}

/** Registration invites. Only a SHA-256 of each token is stored. */
export class InviteStore {
  constructor(private readonly db: Db) {}

  async create(invite: { id: string; tokenHash: Bytes; maxUses: number; expiresAt: Date }): Promise<void> {
    await this.db.invite.create({ data: invite });
  }

  async list(): Promise<InviteInfo[]> {
    return this.db.invite.findMany({
      select: { id: true, maxUses: true, uses: true, expiresAt: true, createdAt: true, revokedAt: true },
      orderBy: { createdAt: "asc" },
    });
  }

  /** @returns whether an unrevoked invite with that id existed */
  async revoke(id: string): Promise<boolean> {
    const { count } = await this.db.invite.updateMany({
      where: { id, revokedAt: null },
      data: { revokedAt: new Date() },
    });
    return count === 1;
  }

  /**
   * Uses one use of the invite with this token hash, if it is unrevoked,
   * unexpired and has uses left. The update is a compare-and-set on `uses`,
   * so concurrent registrations cannot overspend an invite.
   * @returns whether a use was taken
   */
  async consume(tx: Db, tokenHash: Bytes, now: Date): Promise<boolean> {
    const invite = await tx.invite.findUnique({ where: { tokenHash } });
    if (!invite || invite.revokedAt || invite.expiresAt <= now || invite.uses >= invite.maxUses) return false;
    const { count } = await tx.invite.updateMany({
      where: { id: invite.id, uses: invite.uses },
      data: { uses: invite.uses + 1 },
    });
    return count === 1;
  }
}
