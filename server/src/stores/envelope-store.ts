import type { Bytes, Db } from "../db/database.js";
import type { SqlRunner } from "../db/sql-runner.js";
import type { DeviceRef } from "./account-store.js";
import { Prisma } from "../generated/prisma-sqlite/client.js";
import { assembleForRecipient } from "../services/multi-recipient-message.js";

/** An envelope row as stored. */
export interface StoredEnvelope {
  seq: number;
  id: string;
  accountId: string;
  deviceId: number;
  type: number;
  sourceAccountId: string | null;
  sourceDeviceId: number | null;
  /** Federation: the server an envelope relayed from another homeserver came from (null for a local send). */
  sourceServer: string | null;
  content: Bytes;
  serverTimestamp: number;
}

/**
 * An envelope to insert (the database assigns `seq`). For a multi-recipient
 * message, `content` is only the recipient's header and `sharedPayloadId`
 * names the shared part (inserted in the same transaction).
 */
export type NewEnvelope = Omit<StoredEnvelope, "seq"> & {
  expiresAt: number;
  sharedPayloadId: string | null;
  size: number;
};

/** The shared part of a multi-recipient message, stored once. */
export interface NewSharedPayload {
  id: string;
  content: Bytes;
}

/** How much one device's mailbox holds. */
export interface MailboxUsage {
  envelopes: number;
  bytes: number;
}

/** The key of a device in usage maps. */
export const deviceKey = (accountId: string, deviceId: number): string => `${accountId}.${deviceId}`;

/** What a deleted envelope freed. */
interface DeletedRow {
  accountId: string;
  deviceId: number;
  size: number;
  sharedPayloadId: string | null;
}

const envelopeSelect = {
  seq: true,
  id: true,
  accountId: true,
  deviceId: true,
  type: true,
  sourceAccountId: true,
  sourceDeviceId: true,
  sourceServer: true,
  content: true,
  sharedPayloadId: true,
  serverTimestamp: true,
} as const;

/**
 * Per-device mailboxes of opaque envelopes. The hot paths (insert on send,
 * owner check and delete on ack) are single raw statements through Prisma:
 * one multi-row INSERT is atomic on its own, and skips the per-call query
 * compilation that made an ORM create cost ~16x a raw insert here.
 */
export class EnvelopeStore {
  /**
   * @param sql the delivery path's statements (insert, recipients, ack) go
   *   straight to the driver adapter (see {@link SqlRunner}); the rest through Prisma
   */
  constructor(
    private readonly db: Db,
    private readonly sql: SqlRunner,
  ) {}

  /**
   * Inserts envelopes and the shared payloads they refer to, and adds them to
   * their devices' mailbox usage: one statement per 500 rows, all in one
   * transaction (all or none), so the usage counts never drift; with
   * `alongside` (the sends' idempotency records) in the same transaction, so
   * a crash never keeps one without the other.
   */
  async insertMany(
    envelopes: NewEnvelope[],
    shared: NewSharedPayload[] = [],
    alongside: Prisma.Sql[] = [],
  ): Promise<void> {
    if (!envelopes.length && !alongside.length) return;
    const statements: Prisma.Sql[] = [
      ...chunks(shared, 100).map(
        (chunk) => Prisma.sql`INSERT INTO "SharedPayload" ("id", "content")
        VALUES ${Prisma.join(chunk.map((p) => Prisma.sql`(${p.id}, ${p.content})`))}`,
      ),
      ...chunks(envelopes, 500).map((chunk) => {
        const rows = chunk.map(
          (e) =>
            Prisma.sql`(${e.id}, ${e.accountId}, ${e.deviceId}, ${e.type}, ${e.sourceAccountId}, ${e.sourceDeviceId}, ${e.sourceServer}, ${e.content}, ${e.sharedPayloadId}, ${e.size}, ${e.serverTimestamp}, ${e.expiresAt})`,
        );
        return Prisma.sql`INSERT INTO "Envelope"
          ("id", "accountId", "deviceId", "type", "sourceAccountId", "sourceDeviceId", "sourceServer", "content", "sharedPayloadId", "size", "serverTimestamp", "expiresAt")
          VALUES ${Prisma.join(rows)}`;
      }),
      ...chunks(usageDeltas(envelopes, 1), 500).map(addUsage),
      ...alongside,
    ];
    await this.sql.batch(statements);
  }

  /**
   * The devices of these accounts (an account without devices is absent)
   * and each device's mailbox usage (a device without a usage row is
   * empty): a send batch's one read, one query per 1000 accounts.
   */
  async recipients(
    accountIds: string[],
  ): Promise<{ devices: Map<string, DeviceRef[]>; usage: Map<string, MailboxUsage> }> {
    const devices = new Map<string, DeviceRef[]>();
    const usage = new Map<string, MailboxUsage>();
    for (const chunk of chunks(accountIds, 1000)) {
      const rows = await this.sql.query<{
        accountId: string;
        id: number;
        registrationId: number;
        envelopes: number | null;
        bytes: number | bigint | null;
      }>(Prisma.sql`
        SELECT d."accountId", d."id", d."registrationId", u."envelopes", u."bytes" FROM "Device" d
        LEFT JOIN "MailboxUsage" u ON u."accountId" = d."accountId" AND u."deviceId" = d."id"
        WHERE d."accountId" IN (${Prisma.join(chunk)}) ORDER BY d."accountId", d."id"`);
      for (const r of rows) {
        const id = Number(r.id);
        const list = devices.get(r.accountId) ?? [];
        list.push({ id, registrationId: Number(r.registrationId) });
        devices.set(r.accountId, list);
        if (r.envelopes !== null)
          usage.set(deviceKey(r.accountId, id), { envelopes: Number(r.envelopes), bytes: Number(r.bytes) });
      }
    }
    return { devices, usage };
  }

  /** The device's unexpired envelopes after `afterSeq`, oldest first. */
  async fetch(
    accountId: string,
    deviceId: number,
    afterSeq: number,
    limit: number,
    now: number,
  ): Promise<StoredEnvelope[]> {
    const rows = await this.db.envelope.findMany({
      where: { accountId, deviceId, seq: { gt: afterSeq }, expiresAt: { gt: BigInt(now) } },
      select: envelopeSelect,
      orderBy: { seq: "asc" },
      take: limit,
    });
    const ids = [...new Set(rows.flatMap((r) => r.sharedPayloadId ?? []))];
    const shared = new Map(
      ids.length
        ? (await this.db.sharedPayload.findMany({ where: { id: { in: ids } } })).map((p) => [p.id, p.content as Bytes])
        : [],
    );
    return rows.map(({ sharedPayloadId, ...r }) => {
      const tail = sharedPayloadId === null ? undefined : shared.get(sharedPayloadId);
      // A multi-recipient envelope is its header followed by the shared part, exactly as libsignal's
      // messageForRecipient builds it.
      const content = tail ? assembleForRecipient(r.content, tail) : r.content;
      return { ...r, content, serverTimestamp: Number(r.serverTimestamp) };
    });
  }

  /**
   * Deletes the envelopes each device acknowledged, only where they are
   * queued for that device (an id queued for another device, or already
   * deleted, is left alone), takes what they held off their devices' usage
   * and deletes the shared payloads no envelope refers to any more, in one
   * transaction: one DELETE per 500 ids, one usage statement.
   * @returns the deleted envelopes' ids and devices
   */
  async deleteAcknowledged(
    acks: { accountId: string; deviceId: number; ids: string[] }[],
  ): Promise<{ id: string; accountId: string; deviceId: number }[]> {
    const groups = acks.flatMap((a) => chunks(a.ids, 500).map((ids) => ({ ...a, ids })));
    if (!groups.length) return [];
    const owned = chunksBy(groups, 500, (g) => g.ids.length).map((chunk) =>
      Prisma.join(
        chunk.map(
          (g) =>
            Prisma.sql`("accountId" = ${g.accountId} AND "deviceId" = ${g.deviceId} AND "id" IN (${Prisma.join(g.ids)}))`,
        ),
        " OR ",
      ),
    );
    const deleted =
      this.sql.provider === "sqlite" ? await this.deleteOwnedSqlite(owned) : await this.deleteOwnedConcurrent(owned);
    return deleted.map((d) => ({ id: d.id, accountId: d.accountId, deviceId: Number(d.deviceId) }));
  }

  /**
   * SQLite has one writer, so what a statement in the transaction finds is
   * exactly what the DELETE after it removes. Per chunk of ids: the usage
   * goes down by the owned envelopes' count and size, the shared payloads
   * that only they refer to are deleted, then the envelopes; all chunks in
   * one batch (one round trip to the storage worker).
   */
  private async deleteOwnedSqlite(owned: Prisma.Sql[]): Promise<(DeletedRow & { id: string })[]> {
    const statements = owned.flatMap((where) => [
      Prisma.sql`UPDATE "MailboxUsage" SET "envelopes" = "MailboxUsage"."envelopes" - o."n", "bytes" = "MailboxUsage"."bytes" - o."b"
        FROM (SELECT "accountId", "deviceId", COUNT(*) AS "n", SUM("size") AS "b" FROM "Envelope" WHERE ${where}
          GROUP BY "accountId", "deviceId") AS o
        WHERE "MailboxUsage"."accountId" = o."accountId" AND "MailboxUsage"."deviceId" = o."deviceId"`,
      // In the NOT EXISTS, the owned-ids condition names the columns of "Envelope" e.
      Prisma.sql`DELETE FROM "SharedPayload" WHERE "id" IN
          (SELECT "sharedPayloadId" FROM "Envelope" WHERE "sharedPayloadId" IS NOT NULL AND (${where}))
        AND NOT EXISTS (SELECT 1 FROM "Envelope" e WHERE e."sharedPayloadId" = "SharedPayload"."id" AND NOT (${where}))`,
      Prisma.sql`DELETE FROM "Envelope" WHERE ${where} RETURNING "id", "accountId", "deviceId", "size", "sharedPayloadId"`,
    ]);
    const results = await this.sql.batch(statements);
    return results.filter((_, i) => i % 3 === 2).flat() as unknown as (DeletedRow & { id: string })[];
  }

  /**
   * On PostgreSQL two nodes may acknowledge the same envelope at once: the
   * usage goes down by what this transaction's DELETE actually removed.
   */
  private deleteOwnedConcurrent(owned: Prisma.Sql[]): Promise<(DeletedRow & { id: string })[]> {
    return this.sql.transaction(async (tx) => {
      const deleted: (DeletedRow & { id: string })[] = [];
      for (const where of owned) {
        deleted.push(
          ...(await tx.query<DeletedRow & { id: string }>(Prisma.sql`DELETE FROM "Envelope"
          WHERE ${where} RETURNING "id", "accountId", "deviceId", "size", "sharedPayloadId"`)),
        );
      }
      await release(tx, deleted);
      return deleted;
    });
  }

  /** How many envelopes are stored, in one COUNT. */
  async count(): Promise<number> {
    return this.db.envelope.count();
  }

  /** Deletes every envelope that expired before `now`. */
  async deleteExpired(now: number): Promise<number> {
    const count = await this.sql.transaction(async (tx) => {
      const deleted = await tx.query<DeletedRow>(Prisma.sql`DELETE FROM "Envelope" WHERE "expiresAt" <= ${now}
        RETURNING "accountId", "deviceId", "size", "sharedPayloadId"`);
      await release(tx, deleted);
      return deleted.length;
    });
    // Shared payloads left behind: when concurrent acks on PostgreSQL each saw the other's envelope
    // still there, or when a device's queue went with the device (cascade).
    await this.db.$executeRaw`DELETE FROM "SharedPayload" WHERE NOT EXISTS
      (SELECT 1 FROM "Envelope" WHERE "Envelope"."sharedPayloadId" = "SharedPayload"."id")`;
    return count;
  }
}

/** Takes deleted envelopes off their devices' usage and deletes the shared payloads they were the last to use. */
async function release(tx: SqlRunner, deleted: DeletedRow[]): Promise<void> {
  const rows = deleted.map((d) => ({ ...d, deviceId: Number(d.deviceId), size: Number(d.size) }));
  for (const chunk of chunks(usageDeltas(rows, -1), 500)) await tx.execute(addUsage(chunk));
  const shared = [...new Set(rows.flatMap((r) => r.sharedPayloadId ?? []))];
  for (const chunk of chunks(shared, 1000)) {
    await tx.execute(Prisma.sql`DELETE FROM "SharedPayload" WHERE "id" IN (${Prisma.join(chunk)}) AND NOT EXISTS
      (SELECT 1 FROM "Envelope" WHERE "Envelope"."sharedPayloadId" = "SharedPayload"."id")`);
  }
}

/**
 * Adds envelope and byte deltas to devices' usage rows in one statement (a
 * device's row is created with its first envelope, in the same transaction,
 * so a negative delta always finds its row). Rows are sorted by device, so
 * two transactions never wait on each other's rows in opposite orders.
 */
function addUsage(deltas: { accountId: string; deviceId: number; envelopes: number; bytes: number }[]): Prisma.Sql {
  return Prisma.sql`INSERT INTO "MailboxUsage" ("accountId", "deviceId", "envelopes", "bytes")
    VALUES ${Prisma.join(deltas.map((u) => Prisma.sql`(${u.accountId}, ${u.deviceId}, ${u.envelopes}, ${u.bytes})`))}
    ON CONFLICT ("accountId", "deviceId") DO UPDATE SET
      "envelopes" = "MailboxUsage"."envelopes" + excluded."envelopes", "bytes" = "MailboxUsage"."bytes" + excluded."bytes"`;
}

/** Envelope count and bytes per device (times `sign`), sorted by device. */
function usageDeltas(
  rows: { accountId: string; deviceId: number; size: number }[],
  sign: 1 | -1,
): { accountId: string; deviceId: number; envelopes: number; bytes: number }[] {
  const byDevice = new Map<string, { accountId: string; deviceId: number; envelopes: number; bytes: number }>();
  for (const r of rows) {
    const key = deviceKey(r.accountId, r.deviceId);
    const u = byDevice.get(key) ?? { accountId: r.accountId, deviceId: r.deviceId, envelopes: 0, bytes: 0 };
    u.envelopes += sign;
    u.bytes += sign * r.size;
    byDevice.set(key, u);
  }
  return [...byDevice.values()].sort((a, b) =>
    a.accountId < b.accountId ? -1 : a.accountId > b.accountId ? 1 : a.deviceId - b.deviceId,
  );
}

/** Consecutive groups of items whose weights add up to at most `size` (an item heavier than that is a group alone). */
function chunksBy<T>(items: T[], size: number, weight: (item: T) => number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let total = 0;
  for (const item of items) {
    if (current.length && total + weight(item) > size) {
      out.push(current);
      current = [];
      total = 0;
    }
    current.push(item);
    total += weight(item);
  }
  if (current.length) out.push(current);
  return out;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
