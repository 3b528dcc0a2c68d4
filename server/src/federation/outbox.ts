import { createHash, randomBytes, randomUUID } from "node:crypto";
import {
  federationTransactionResponseSchema,
  limits,
  type ErrorBody,
  type FederatedSend,
  type FederatedSendResult,
  type OutgoingMessage,
  type RemoteDeliveryFailed,
  type RemoteDeliveryFailure,
  type RemoteSendResponse,
} from "@zimchat/protocol";
import { HttpError } from "../errors.js";
import type { Metrics } from "../metrics/metrics.js";
import type { DevicePrincipal } from "../services/account-service.js";
import type { OutboxSend, OutboxStore } from "../stores/outbox-store.js";

/** The outbox's timings and caps. */
export const outboxLimits = {
  /** The first wait after a failed transaction; doubled after each failure in a row. */
  initialBackoffMs: 10_000,
  /** The longest wait between attempts (Synapse's days-long backoff is what operators complain about). */
  maxBackoffMs: 3_600_000,
  /** How long a client's send waits for the other server's answer before it is answered `queued: true`. */
  answerWaitMs: 5_000,
  /** Cluster mode: how long one node holds a destination while it sends a transaction (well above its timeouts). */
  transactionLeaseMs: 60_000,
  /** Cluster mode: another node sends to that destination now; this node looks again after this long. */
  busyRetryMs: 1_000,
} as const;

/** One send to relay: authenticated (queued when the other server does not answer) or sealed (never queued). */
export interface RelayRequest {
  /** The sending device; null for a sealed-sender send (no credentials), which carries `accessKey`. */
  sender: DevicePrincipal | null;
  server: string;
  destination: string;
  messages: OutgoingMessage[];
  accessKey?: string | undefined;
  /** The client's idempotency key: the send id is derived from it, so a retry is the same send everywhere. */
  idempotencyKey?: string | undefined;
}

/** What a transaction answered, per send id; or why it could not be sent. */
type TransactionOutcome = { results: Map<string, FederatedSendResult> } | { failed: "unreachable" | "refused" };

/** Sends a transaction to a server: its status and parsed JSON body (network failures throw). */
export type Transmit = (
  server: string,
  txnId: string,
  sends: FederatedSend[],
) => Promise<{ status: number; body: unknown }>;

/**
 * Runs `job` unless another node runs a job of that name now (cluster mode:
 * a Redis lock with a lease); false when it did not run.
 */
export type Exclusive = (name: string, leaseMs: number, job: () => Promise<void>) => Promise<boolean>;

/** Told when a queued send is given up (its device gets `remote-delivery-failed`). */
export type FailureListener = (accountId: string, deviceId: number, failure: RemoteDeliveryFailed) => void;

interface Waiter {
  server: string;
  /** A sealed send: refused rather than queued. */
  sealed: boolean;
  resolve(response: RemoteSendResponse): void;
  reject(error: unknown): void;
}

/** A sealed send: held in memory only, for the one transaction that carries it. */
interface VolatileSend {
  send: FederatedSend;
  server: string;
}

/**
 * The federation outbox: sends from local devices to accounts on other
 * servers. An authenticated send is committed here first (durable), then
 * relayed; its client waits up to {@link outboxLimits.answerWaitMs} for the
 * other server's answer (passed back as is, 409 and 410 included) and is
 * otherwise answered `queued: true`. A sealed send has no sender to tell
 * later, so it is never queued: it rides the next transaction or is
 * refused 502 `peer_unavailable`.
 *
 * Per destination, one transaction is in flight at a time, carrying up to
 * {@link limits.maxFederationTransactionSends} sends in order. After a
 * failed transaction the destination waits (10 s, doubling, capped at an
 * hour; stored, so a restart keeps it) until the wait ends or that server
 * is heard from. The other server de-duplicates by send id, so a
 * transaction whose answer was lost is repeated without duplicates. A
 * send refused after its client stopped waiting, or not delivered within
 * the envelope lifetime, becomes a failure notice for its sending device.
 */
export class Outbox {
  private readonly active = new Map<string, { again: boolean }>();
  /** Destinations waiting: out a backoff, or (also in `busy`) for another node's transaction to end. */
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly busy = new Set<string>();
  private readonly waiters = new Map<string, Waiter>();
  private readonly volatile = new Map<string, VolatileSend[]>();
  private readonly listeners = new Set<FailureListener>();
  private closed = false;

  constructor(
    private readonly store: OutboxStore,
    private readonly transmit: Transmit,
    private readonly ttlMs: number,
    /** Sends queued for one destination server: beyond it, 507 `outbox_full` (`federationOutboxMaxPerPeer`). */
    private readonly maxPendingPerServer: number,
    private readonly metrics?: Metrics,
    /** Cluster mode: one node at a time sends to each destination (one transaction in flight across the cluster). */
    private readonly exclusive: Exclusive = async (_name, _lease, job) => (await job(), true),
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts relaying what a previous run left queued. */
  async start(): Promise<void> {
    for (const server of await this.store.destinations()) this.kick(server);
  }

  onFailure(listener: FailureListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Relays one send and waits for the other server's answer.
   * @throws HttpError the other server's refusal; 502 `peer_unavailable` for a sealed send it did not accept in time;
   *   507 `outbox_full`
   */
  async send(request: RelayRequest): Promise<RemoteSendResponse> {
    const id = sendId(request);
    const send: FederatedSend = {
      id,
      destination: request.destination,
      messages: request.messages,
      ...(request.sender && { source: { uuid: request.sender.accountId, deviceId: request.sender.deviceId } }),
      ...(request.accessKey !== undefined && { accessKey: request.accessKey }),
    };
    const answer = this.wait(id, request.server, !request.sender);
    if (request.sender) {
      if ((await this.store.depth(request.server)) >= this.maxPendingPerServer) {
        this.waiters.delete(id);
        this.metrics?.refused("outbox_full");
        throw new HttpError(
          "outbox_full",
          "Too many sends wait for that server; try again later",
          { retryAfterSeconds: 60 },
          { "Retry-After": "60" },
        );
      }
      await this.store.add({
        id,
        server: request.server,
        destination: request.destination,
        accountId: request.sender.accountId,
        deviceId: request.sender.deviceId,
        messages: JSON.stringify(request.messages),
        expiresAt: this.now() + this.ttlMs,
      });
    } else {
      const queue = this.volatile.get(request.server) ?? [];
      queue.push({ send, server: request.server });
      this.volatile.set(request.server, queue);
    }
    // A destination waiting out a backoff: answered at once (queued, or refused when sealed). One that another node
    // sends to right now: this send waits for the next transaction, like any other.
    if (this.timers.has(request.server) && !this.busy.has(request.server)) this.releaseWaiters(request.server);
    else this.kick(request.server);
    return answer;
  }

  /** A signed request came from `server`: it is up, so a send waiting out a backoff goes now. */
  heardFrom(server: string): void {
    if (!this.timers.has(server) || this.busy.has(server)) return;
    clearTimeout(this.timers.get(server));
    this.timers.delete(server);
    void this.store
      .setPeer(server, { failures: 0, nextAttemptAt: 0 })
      .then(() => this.kick(server))
      .catch(() => this.kick(server));
  }

  /** The failure notices a device has not confirmed, oldest first. */
  async failuresFor(device: DevicePrincipal): Promise<RemoteDeliveryFailed[]> {
    const rows = await this.store.failuresFor(device.accountId, device.deviceId);
    return rows.map((r) => JSON.parse(r.failure) as RemoteDeliveryFailed);
  }

  /** The device handled a failure notice: it is deleted. */
  async confirmFailure(device: DevicePrincipal, id: string): Promise<void> {
    await this.store.confirmFailure(device.accountId, device.deviceId, id);
  }

  /** Gives up sends whose lifetime is over (failure `expired`) and deletes failure notices nobody confirmed. */
  async sweep(): Promise<number> {
    const now = this.now();
    let count = 0;
    for (;;) {
      const rows = await this.store.expired(now, 500);
      for (const row of rows) await this.giveUp(row, "expired");
      count += rows.length;
      if (rows.length < 500) break;
    }
    await this.store.deleteStaleFailures(now);
    return count;
  }

  /** Pending sends and backoff per destination (metrics, admin). */
  async peers(): Promise<{ server: string; pending: number; failures: number; nextAttemptAt: number }[]> {
    const [depth, states] = await Promise.all([this.store.depthByServer(), this.store.peers()]);
    const servers = new Set([...depth.keys(), ...states.keys()]);
    return [...servers].sort().map((server) => ({
      server,
      pending: depth.get(server) ?? 0,
      failures: states.get(server)?.failures ?? 0,
      nextAttemptAt: states.get(server)?.nextAttemptAt ?? 0,
    }));
  }

  /** Stops relaying; waiting clients are answered `queued` (their sends stay in the outbox). */
  close(): void {
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const server of new Set([...this.waiters.values()].map((w) => w.server))) this.releaseWaiters(server);
    this.volatile.clear();
  }

  /** A waiter for a send's answer, answered `queued` after {@link outboxLimits.answerWaitMs}. */
  private wait(id: string, server: string, sealed: boolean): Promise<RemoteSendResponse> {
    return new Promise<RemoteSendResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.waiters.get(id)?.resolve !== settle) return;
        this.waiters.delete(id);
        resolve({ id, queued: true });
      }, outboxLimits.answerWaitMs);
      timer.unref();
      const settle = (response: RemoteSendResponse): void => {
        clearTimeout(timer);
        resolve(response);
      };
      this.waiters.set(id, {
        server,
        sealed,
        resolve: settle,
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  }

  /** Runs the destination's loop, or tells the running one to look again. */
  private kick(server: string): void {
    if (this.closed) return;
    const running = this.active.get(server);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false };
    this.active.set(server, state);
    void this.run(server, state)
      .catch(() => this.backoff(server))
      .finally(() => {
        this.active.delete(server);
        if (state.again && !this.timers.has(server)) this.kick(server);
      });
  }

  /** Sends transactions to `server` while it has sends and accepts them. */
  private async run(server: string, state: { again: boolean }): Promise<void> {
    for (;;) {
      state.again = false;
      if (this.closed || this.timers.has(server)) return;
      const peer = await this.store.peer(server);
      const wait = peer.nextAttemptAt - this.now();
      if (wait > 0) {
        this.schedule(server, wait);
        this.releaseWaiters(server);
        return;
      }
      const result: { step: "next" | "done" | "backoff" } = { step: "done" };
      const ran = await this.exclusive(`federation-outbox:${server}`, outboxLimits.transactionLeaseMs, async () => {
        result.step = await this.step(server, peer.failures);
      });
      const { step } = result;
      if (!ran) {
        // Another node sends to this server now (its transaction may carry this node's sends too).
        this.busy.add(server);
        this.schedule(server, outboxLimits.busyRetryMs);
        return;
      }
      if (step === "backoff") {
        await this.backoff(server);
        return;
      }
      if (step === "done" && !state.again && !this.volatile.has(server)) return;
    }
  }

  /** One transaction to `server`: what to do next (send more, stop, back off). */
  private async step(server: string, failures: number): Promise<"next" | "done" | "backoff"> {
    const rows = await this.store.pending(server, limits.maxFederationTransactionSends);
    const volatile = this.volatile.get(server) ?? [];
    this.volatile.delete(server);
    const sends = pack([
      ...rows.map((r) => ({ send: toSend(r), row: r as OutboxSend | null })),
      ...volatile.map((v) => ({ send: v.send, row: null })),
    ]);
    // What did not fit goes next time.
    const left = volatile.filter((v) => !sends.some((s) => s.send.id === v.send.id));
    if (left.length) this.volatile.set(server, [...left, ...(this.volatile.get(server) ?? [])]);
    if (!sends.length) return "done";
    const outcome = await this.transaction(
      server,
      sends.map((s) => s.send),
    );
    if ("failed" in outcome) {
      if (outcome.failed === "refused") {
        // The transaction itself was refused as invalid: retrying it would be refused again.
        for (const s of sends) await this.settle(s, refusedResult(s.send.id));
        return "next";
      }
      for (const s of sends) if (!s.row) this.rejectVolatile(s.send.id);
      return "backoff";
    }
    if (failures > 0) await this.store.setPeer(server, { failures: 0, nextAttemptAt: 0 });
    this.metrics?.federationBackoff.set({ peer: server }, 0);
    for (const s of sends) {
      await this.settle(s, outcome.results.get(s.send.id) ?? refusedResult(s.send.id));
    }
    return rows.length < limits.maxFederationTransactionSends ? "done" : "next";
  }

  private async transaction(server: string, sends: FederatedSend[]): Promise<TransactionOutcome> {
    const txnId = randomBytes(16).toString("base64url");
    let answer: { status: number; body: unknown };
    try {
      answer = await this.transmit(server, txnId, sends);
    } catch {
      return { failed: "unreachable" };
    }
    if (answer.status === 200) {
      const parsed = federationTransactionResponseSchema.safeParse(answer.body);
      if (!parsed.success) return { failed: "unreachable" };
      return { results: new Map(parsed.data.results.map((r) => [r.id, r])) };
    }
    // A body the other server cannot take (malformed, too large): the same sends would be refused again.
    if (answer.status === 400 || answer.status === 413) return { failed: "refused" };
    return { failed: "unreachable" };
  }

  /** One send's answer: to its waiting client, or (refused, nobody waiting) as a failure notice. */
  private async settle(s: { send: FederatedSend; row: OutboxSend | null }, result: FederatedSendResult): Promise<void> {
    const waiter = this.waiters.get(s.send.id);
    this.waiters.delete(s.send.id);
    if (result.status === 200 && result.response) {
      if (s.row) await this.store.delete([s.send.id]);
      this.metrics?.federationRelayed.inc({ result: "delivered" });
      waiter?.resolve({
        id: s.send.id,
        queued: false,
        serverTimestamp: result.response.serverTimestamp,
        envelopes: result.response.envelopes,
      });
      return;
    }
    const error = result.error ?? { code: "peer_unavailable" as const, message: "The other server refused the send" };
    this.metrics?.federationRelayed.inc({ result: "refused" });
    if (waiter || !s.row) {
      if (s.row) await this.store.delete([s.send.id]);
      waiter?.reject(toHttpError(error));
      return;
    }
    await this.giveUp(s.row, failureReason(error), error);
  }

  private async giveUp(row: OutboxSend, reason: RemoteDeliveryFailure, error?: ErrorBody): Promise<void> {
    const failure: RemoteDeliveryFailed = {
      id: row.id,
      server: row.server,
      destination: row.destination,
      reason,
      ...(error?.missingDevices && { missingDevices: error.missingDevices }),
      ...(error?.extraDevices && { extraDevices: error.extraDevices }),
      ...(error?.staleDevices && { staleDevices: error.staleDevices }),
    };
    await this.store.fail(row.id, JSON.stringify(failure), this.now() + this.ttlMs);
    this.metrics?.federationDeliveryFailures.inc({ reason });
    for (const listener of this.listeners) listener(row.accountId, row.deviceId, failure);
  }

  private async backoff(server: string): Promise<void> {
    if (this.closed) return;
    const peer = await this.store.peer(server).catch(() => ({ failures: 0, nextAttemptAt: 0 }));
    const failures = peer.failures + 1;
    const delay = Math.min(outboxLimits.initialBackoffMs * 2 ** Math.min(failures - 1, 20), outboxLimits.maxBackoffMs);
    await this.store.setPeer(server, { failures, nextAttemptAt: this.now() + delay }).catch(() => undefined);
    this.metrics?.federationRetries.inc({ peer: server });
    this.metrics?.federationBackoff.set({ peer: server }, delay / 1000);
    this.schedule(server, delay);
    this.releaseWaiters(server);
  }

  private schedule(server: string, delay: number): void {
    if (this.closed || this.timers.has(server)) return;
    const timer = setTimeout(() => {
      this.timers.delete(server);
      this.busy.delete(server);
      this.kick(server);
    }, delay);
    timer.unref();
    this.timers.set(server, timer);
  }

  /** While a destination waits out a backoff, its clients are answered now: queued, or (sealed) refused. */
  private releaseWaiters(server: string): void {
    this.volatile.delete(server);
    for (const [id, waiter] of this.waiters) {
      if (waiter.server !== server) continue;
      if (waiter.sealed) this.rejectVolatile(id);
      else {
        this.waiters.delete(id);
        waiter.resolve({ id, queued: true });
      }
    }
  }

  private rejectVolatile(id: string): void {
    const waiter = this.waiters.get(id);
    this.waiters.delete(id);
    waiter?.reject(new HttpError("peer_unavailable", "The other server could not be reached; try again later"));
  }
}

/** A send's id: derived from the client's idempotency key (so a retry is the same send), random without one. */
function sendId(request: RelayRequest): string {
  if (request.idempotencyKey === undefined) return randomUUID();
  // One key may cover several recipients (a group send): each recipient's send has its own id.
  const scope = request.sender
    ? `device\0${request.sender.accountId}.${request.sender.deviceId}\0${request.server}\0${request.destination}`
    : `sealed\0${request.server}\0${request.destination}`;
  const hash = createHash("sha256").update(`zimchat-relay-id-v1\0${scope}\0${request.idempotencyKey}`).digest();
  // Formatted as a version-4 UUID (the wire's id format), from the hash's first 16 bytes.
  hash[6] = (hash[6]! & 0x0f) | 0x40;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function toSend(row: OutboxSend): FederatedSend {
  return {
    id: row.id,
    destination: row.destination,
    source: { uuid: row.accountId, deviceId: row.deviceId },
    messages: JSON.parse(row.messages) as OutgoingMessage[],
  };
}

/** The sends that fit one transaction's body, in order (at least one: a single send always fits). */
function pack<T extends { send: FederatedSend }>(candidates: T[]): T[] {
  const budget = limits.maxFederationTransactionBytes - 1024;
  const out: T[] = [];
  let bytes = 0;
  for (const c of candidates) {
    if (out.length >= limits.maxFederationTransactionSends) break;
    const size = JSON.stringify(c.send).length + 1;
    if (out.length && bytes + size > budget) break;
    out.push(c);
    bytes += size;
  }
  return out;
}

function refusedResult(id: string): FederatedSendResult {
  return { id, status: 502, error: { code: "peer_unavailable", message: "The other server did not accept the send" } };
}

function failureReason(error: ErrorBody): RemoteDeliveryFailure {
  switch (error.code) {
    case "mismatched_devices":
    case "stale_devices":
    case "not_found":
    case "unauthorized":
      return error.code;
    default:
      return "refused";
  }
}

/** The other server's refusal as this server's own answer to the client. */
function toHttpError(error: ErrorBody): HttpError {
  const { code, message, ...details } = error;
  const after = details.retryAfterSeconds;
  return new HttpError(code, message, details, after === undefined ? {} : { "Retry-After": String(after) });
}
