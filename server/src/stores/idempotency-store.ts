import type { SqlRunner } from "../db/sql-runner.js";
import type { Db } from "../db/database.js";
import { Prisma } from "../generated/prisma-sqlite/client.js";

/**
 * A remembered send: the hashes that identify it and its first answer (see `SendIdempotency` in prisma/models.prisma).
 */
export interface IdempotencyRecord {
  keyHash: string;
  fingerprint: string;
  answer: string;
  expiresAt: number;
}

/** A statement that has not run yet: the envelope insert runs it in its own transaction. */
export type PendingStatement = Prisma.Sql;

/**
 * Idempotency keys of sends. The records are written by statements the
 * envelope insert runs in its own transaction, so a record exists exactly
 * when its envelopes were committed.
 */
export class IdempotencyStore {
  constructor(
    private readonly db: Db,
    private readonly sql: SqlRunner,
  ) {}

  /** The unexpired records among these key hashes (one query on the delivery path: straight to the adapter). */
  async find(keyHashes: string[], now: number): Promise<IdempotencyRecord[]> {
    if (!keyHashes.length) return [];
    const rows = await this.sql.query<IdempotencyRecord & { expiresAt: number | bigint | string }>(
      Prisma.sql`SELECT "keyHash", "fingerprint", "answer", "expiresAt" FROM "SendIdempotency"
        WHERE "keyHash" IN (${Prisma.join(keyHashes)}) AND "expiresAt" > ${now}`,
    );
    return rows.map((r) => ({ ...r, expiresAt: Number(r.expiresAt) }));
  }

  /**
   * Statements that write these records: expired records under the same
   * hashes (not swept yet) are deleted first; an unexpired one makes the
   * INSERT fail, and with it the whole transaction (another node committed
   * the same key first: the batch is re-run and finds it).
   */
  insertStatements(records: IdempotencyRecord[], now: number): PendingStatement[] {
    if (!records.length) return [];
    const hashes = Prisma.join(records.map((r) => r.keyHash));
    const rows = records.map((r) => Prisma.sql`(${r.keyHash}, ${r.fingerprint}, ${r.answer}, ${r.expiresAt})`);
    return [
      Prisma.sql`DELETE FROM "SendIdempotency" WHERE "keyHash" IN (${hashes}) AND "expiresAt" <= ${now}`,
      Prisma.sql`INSERT INTO "SendIdempotency" ("keyHash", "fingerprint", "answer", "expiresAt") VALUES ${Prisma.join(rows)}`,
    ];
  }

  /** Deletes every record that expired before `now`. */
  async deleteExpired(now: number): Promise<number> {
    const { count } = await this.db.sendIdempotency.deleteMany({ where: { expiresAt: { lte: BigInt(now) } } });
    return count;
  }

  /** How many records are stored. */
  async count(): Promise<number> {
    return this.db.sendIdempotency.count();
  }
}
