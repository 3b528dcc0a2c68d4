import type { Db } from "../db/database.js";

/** A send waiting in the federation outbox (see `FederationOutbox` in prisma/models.prisma). */
export interface OutboxSend {
  seq: number;
  id: string;
  server: string;
  destination: string;
  accountId: string;
  deviceId: number;
  /** The send's messages as JSON (ciphertext only). */
  messages: string;
  expiresAt: number;
}

/** A send that will not be delivered, kept until its sending device confirms the notice. */
export interface OutboxFailure {
  id: string;
  accountId: string;
  deviceId: number;
  /** The `remote-delivery-failed` event as JSON. */
  failure: string;
}

/** A destination server's delivery state. */
export interface PeerState {
  failures: number;
  nextAttemptAt: number;
}

/**
 * The federation outbox: sends to other servers in order per destination,
 * the failure notices of sends given up, and each destination's backoff.
 */
export class OutboxStore {
  constructor(private readonly db: Db) {}

  /** Adds a send; false when a send with this id is already queued (a client's retry). */
  async add(send: Omit<OutboxSend, "seq">): Promise<boolean> {
    const existing = await this.db.federationOutbox.findUnique({ where: { id: send.id }, select: { seq: true } });
    if (existing) return false;
    await this.db.federationOutbox.create({ data: { ...send, expiresAt: BigInt(send.expiresAt) } });
    return true;
  }

  /** The oldest pending sends to `server` (not given up), in order. */
  async pending(server: string, limit: number): Promise<OutboxSend[]> {
    const rows = await this.db.federationOutbox.findMany({
      where: { server, failure: null },
      orderBy: { seq: "asc" },
      take: limit,
    });
    return rows.map(({ failure: _failure, ...r }) => ({ ...r, expiresAt: Number(r.expiresAt) }));
  }

  /** The servers with pending sends. */
  async destinations(): Promise<string[]> {
    const rows = await this.db.federationOutbox.findMany({
      where: { failure: null },
      distinct: ["server"],
      select: { server: true },
    });
    return rows.map((r) => r.server);
  }

  /** Pending sends per destination server (for `/metrics` and the admin API). */
  async depthByServer(): Promise<Map<string, number>> {
    const rows = await this.db.federationOutbox.groupBy({
      by: ["server"],
      where: { failure: null },
      _count: { _all: true },
    });
    return new Map(rows.map((r) => [r.server, r._count._all]));
  }

  /** Pending sends to one server. */
  async depth(server: string): Promise<number> {
    return this.db.federationOutbox.count({ where: { server, failure: null } });
  }

  /** Deletes sends (delivered, or refused while their sender waited) and confirmed failure notices. */
  async delete(ids: string[]): Promise<void> {
    if (ids.length) await this.db.federationOutbox.deleteMany({ where: { id: { in: ids } } });
  }

  /** Turns a pending send into a failure notice, kept until `keepUntil` unless its device confirms it first. */
  async fail(id: string, failure: string, keepUntil: number): Promise<void> {
    await this.db.federationOutbox.updateMany({
      where: { id, failure: null },
      data: { failure, messages: "[]", expiresAt: BigInt(keepUntil) },
    });
  }

  /** Pending sends whose lifetime is over (to be given up as `expired`). */
  async expired(now: number, limit: number): Promise<OutboxSend[]> {
    const rows = await this.db.federationOutbox.findMany({
      where: { failure: null, expiresAt: { lte: BigInt(now) } },
      orderBy: { seq: "asc" },
      take: limit,
    });
    return rows.map(({ failure: _failure, ...r }) => ({ ...r, expiresAt: Number(r.expiresAt) }));
  }

  /** Deletes failure notices kept past their time (never confirmed). */
  async deleteStaleFailures(now: number): Promise<number> {
    const { count } = await this.db.federationOutbox.deleteMany({
      where: { failure: { not: null }, expiresAt: { lte: BigInt(now) } },
    });
    return count;
  }

  /** The failure notices a device has not confirmed. */
  async failuresFor(accountId: string, deviceId: number): Promise<OutboxFailure[]> {
    const rows = await this.db.federationOutbox.findMany({
      where: { accountId, deviceId, failure: { not: null } },
      orderBy: { seq: "asc" },
      select: { id: true, accountId: true, deviceId: true, failure: true },
    });
    return rows.map((r) => ({ ...r, failure: r.failure! }));
  }

  /** Deletes a failure notice its device confirmed (another device's id is ignored). */
  async confirmFailure(accountId: string, deviceId: number, id: string): Promise<void> {
    await this.db.federationOutbox.deleteMany({ where: { id, accountId, deviceId, failure: { not: null } } });
  }

  /** A destination's delivery state (a server never tried is ready, with no failures). */
  async peer(server: string): Promise<PeerState> {
    const row = await this.db.federationPeer.findUnique({ where: { server } });
    return row
      ? { failures: row.failures, nextAttemptAt: Number(row.nextAttemptAt) }
      : { failures: 0, nextAttemptAt: 0 };
  }

  /** Every destination's delivery state. */
  async peers(): Promise<Map<string, PeerState>> {
    const rows = await this.db.federationPeer.findMany();
    return new Map(rows.map((r) => [r.server, { failures: r.failures, nextAttemptAt: Number(r.nextAttemptAt) }]));
  }

  async setPeer(server: string, state: PeerState): Promise<void> {
    const data = { failures: state.failures, nextAttemptAt: BigInt(state.nextAttemptAt) };
    await this.db.federationPeer.upsert({ where: { server }, create: { server, ...data }, update: data });
  }
}
