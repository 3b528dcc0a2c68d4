import type { Bytes, Db } from "../db/database.js";
import { Prisma } from "../generated/prisma-sqlite/client.js";

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

/**
 * Per-device mailboxes of opaque envelopes. The hot paths (insert on send,
 * owner check and delete on ack) are single raw statements through Prisma:
 * one multi-row INSERT is atomic on its own, and skips the per-call query
 * compilation that made an ORM create cost ~16x a raw insert here.
 */
export class EnvelopeStore {
  constructor(private readonly db: Db) {}

  /**
   * Inserts envelopes: one statement per 500 rows, all in one transaction
   * (all or none), together with `alongside` (e.g. the sends' idempotency
   * records), so a crash never keeps one without the other.
   */
  async insertMany(envelopes: NewEnvelope[], alongside: Prisma.PrismaPromise<unknown>[] = []): Promise<void> {
    const statements: Prisma.PrismaPromise<unknown>[] = chunks(envelopes, 500).map((chunk) => {
      const rows = chunk.map(
        (e) =>
          Prisma.sql`(${e.id}, ${e.accountId}, ${e.deviceId}, ${e.type}, ${e.sourceAccountId}, ${e.sourceDeviceId}, ${e.content}, ${e.serverTimestamp}, ${e.expiresAt})`,
      );
      return this.db.$executeRaw`INSERT INTO "Envelope"
        ("id", "accountId", "deviceId", "type", "sourceAccountId", "sourceDeviceId", "content", "serverTimestamp", "expiresAt")
        VALUES ${Prisma.join(rows)}`;
    });
    statements.push(...alongside);
    if (statements.length === 1) await statements[0];
    else if (statements.length > 1) await this.db.$transaction(statements);
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
  async owners(ids: string[]): Promise<{ id: string; accountId: string; deviceId: number }[]> {
    const rows = await Promise.all(
      chunks(ids, 1000).map((chunk) =>
        this.db.$queryRaw<{ id: string; accountId: string; deviceId: number }[]>`
          SELECT "id", "accountId", "deviceId" FROM "Envelope" WHERE "id" IN (${Prisma.join(chunk)})`,
      ),
    );
    return rows.flat().map((r) => ({ ...r, deviceId: Number(r.deviceId) }));
  }

  /** Deletes envelopes by id, in one statement. */
  async deleteIds(ids: string[]): Promise<number> {
    let deleted = 0;
    for (const chunk of chunks(ids, 1000)) deleted += await this.db.$executeRaw`DELETE FROM "Envelope" WHERE "id" IN (${Prisma.join(chunk)})`;
    return deleted;
  }

  /** How many envelopes are stored, in one COUNT. */
  async count(): Promise<number> {
    return this.db.envelope.count();
  }

  /** Deletes every envelope that expired before `now`. */
  async deleteExpired(now: number): Promise<number> {
    const { count } = await this.db.envelope.deleteMany({ where: { expiresAt: { lte: BigInt(now) } } });
    return count;
  }
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
