import type { Bytes, Db } from "../db/database.js";

/** An envelope row as stored. */
export interface StoredEnvelope {
  seq: number;
  id: string;
  accountId: string;
  deviceId: number;
  type: number;
  sourceAccountId: string | null;
  sourceDeviceId: number | null;
  content: Bytes;
  serverTimestamp: number;
}

/** An envelope to insert (the database assigns `seq`). */
export type NewEnvelope = Omit<StoredEnvelope, "seq"> & { expiresAt: number };

const envelopeSelect = {
  seq: true,
  id: true,
  accountId: true,
  deviceId: true,
  type: true,
  sourceAccountId: true,
  sourceDeviceId: true,
  content: true,
  serverTimestamp: true,
} as const;

/** Per-device mailboxes of opaque envelopes. */
export class EnvelopeStore {
  constructor(private readonly db: Db) {}

  /** Inserts envelopes (inside the caller's transaction). */
  async insertMany(tx: Db, envelopes: NewEnvelope[]): Promise<void> {
    if (!envelopes.length) return;
    await tx.envelope.createMany({
      data: envelopes.map((e) => ({ ...e, serverTimestamp: BigInt(e.serverTimestamp), expiresAt: BigInt(e.expiresAt) })),
    });
  }

  /** The device's unexpired envelopes after `afterSeq`, oldest first. */
  async fetch(accountId: string, deviceId: number, afterSeq: number, limit: number, now: number): Promise<StoredEnvelope[]> {
    const rows = await this.db.envelope.findMany({
      where: { accountId, deviceId, seq: { gt: afterSeq }, expiresAt: { gt: BigInt(now) } },
      select: envelopeSelect,
      orderBy: { seq: "asc" },
      take: limit,
    });
    return rows.map((r) => ({ ...r, serverTimestamp: Number(r.serverTimestamp) }));
  }

  /** Which device each of these envelope ids is queued for (unknown ids are absent). */
  async owners(tx: Db, ids: string[]): Promise<{ id: string; accountId: string; deviceId: number }[]> {
    return tx.envelope.findMany({ where: { id: { in: ids } }, select: { id: true, accountId: true, deviceId: true } });
  }

  /** Deletes envelopes by id (inside the caller's transaction). */
  async deleteIds(tx: Db, ids: string[]): Promise<number> {
    if (!ids.length) return 0;
    const { count } = await tx.envelope.deleteMany({ where: { id: { in: ids } } });
    return count;
  }

  /** Deletes every envelope that expired before `now`. */
  async deleteExpired(now: number): Promise<number> {
    const { count } = await this.db.envelope.deleteMany({ where: { expiresAt: { lte: BigInt(now) } } });
    return count;
  }

  /** Runs `work` in one transaction. */
  async transaction<T>(work: (tx: Db) => Promise<T>): Promise<T> {
    return this.db.$transaction(async (tx) => work(tx as Db));
  }
}
