import type { IncomingMessage, Server as HttpServer } from "node:http";
import { createAdapter } from "@socket.io/redis-adapter";
import { Server, type Namespace, type Socket } from "socket.io";
import {
  ackRequestSchema,
  limits,
  multiRecipientRequestSchema,
  sealedSocketSendRequestSchema,
  socketSendRequestSchema,
  type ClientToServerEvents,
  type SealedClientToServerEvents,
  type ServerToClientEvents,
  type SocketResult,
} from "@zimchat/protocol";
import type { z } from "zod";
import type { ClusterRedis } from "../cluster/redis.js";
import { HttpError } from "../errors.js";
import { invalidRequest, toHttpError } from "../http/router.js";
import type { Logger } from "../logger.js";
import { unauthorized, type DevicePrincipal } from "../services/account-service.js";
import type { Delivery } from "../services/mailbox-service.js";
import type { Services } from "../services/index.js";

/** What the gateway keeps on each authenticated socket. */
export type SocketData = DevicePrincipal;

/** The typed Socket.IO server. */
export type Gateway = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type DeviceSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

/** The room that holds a device's connection (a newer connection displaces what is in it). */
export function deviceRoom(accountId: string, deviceId: number): string {
  return `device:${accountId}.${deviceId}`;
}

/** The room every connection of an account joins: account-wide notices (`devices-changed`) go here. */
export function accountRoom(accountId: string): string {
  return `account:${accountId}`;
}

/** The room a device's connection joins once its stored queue is drained: live pushes go here. */
export function liveRoom(accountId: string, deviceId: number): string {
  return `live:${accountId}.${deviceId}`;
}

/** Options for {@link createGateway}. */
export interface GatewayOptions {
  /** How long a client may take to confirm a drained batch. @default 30 s */
  drainAckTimeoutMs?: number;
  /**
   * The cluster's Redis: emits to rooms and `disconnectSockets` reach the
   * node that holds the socket (Socket.IO Redis adapter, channels under
   * `<prefix>:socket.io`). Absent: one node, the in-memory adapter.
   */
  redis?: ClusterRedis;
  /** A handshake's client address (Express's `req.ip` rule); absent: the socket's peer. Keys the sealed-send limit. */
  addressOf?: (req: IncomingMessage) => string;
}

/**
 * The Socket.IO gateway. A device authenticates in the handshake with the
 * same credentials as HTTP Basic, joins its own room (displacing an older
 * connection of the same device), receives its stored queue in batches
 * (each confirmed before the next), then `queue-empty`, then envelopes as
 * they are committed. It sends and acknowledges with the same schemas and
 * rules as the REST routes.
 */
export function createGateway(httpServer: HttpServer, services: Services, logger: Logger, options: GatewayOptions = {}): Gateway {
  const drainAckTimeoutMs = options.drainAckTimeoutMs ?? 30_000;
  const io: Gateway = new Server(httpServer, {
    maxHttpBufferSize: limits.maxBodyBytes,
    serveClient: false,
    ...(options.redis && { adapter: createAdapter(options.redis.client, options.redis.subscriber, { key: `${options.redis.prefix}:socket.io` }) }),
  });

  io.use((socket, next) => {
    const auth = socket.handshake.auth as { username?: unknown; password?: unknown };
    if (typeof auth.username !== "string" || typeof auth.password !== "string" || auth.username.length > 200 || auth.password.length > 200) {
      next(connectError(unauthorized()));
      return;
    }
    services.accounts.authenticate(auth.username, auth.password).then(
      (principal) => {
        socket.data = principal;
        next();
      },
      (error: unknown) => next(connectError(toHttpError(error) ?? new HttpError("internal", "Internal error"))),
    );
  });

  io.on("connection", (socket) => {
    const { accountId, deviceId } = socket.data;
    const room = deviceRoom(accountId, deviceId);
    // One connection per device: the newest wins, on every node. The Redis
    // adapter carries the request through Redis and also runs it on this
    // node when it comes back, after this socket joined the room: `except`
    // keeps this socket out of it.
    const older = io.in(room).except(socket.id);
    older.emit("closing", "displaced");
    older.disconnectSockets(true);
    void socket.join([room, accountRoom(accountId)]);

    socket.on("send", handler(logger, socketSendRequestSchema, (request) =>
      services.mailbox.send(socket.data, request.destination, request.messages, request.idempotencyKey),
    ));
    socket.on("ack", handler(logger, ackRequestSchema, async (request) => ({
      deleted: await services.mailbox.ack(socket.data, request.ids),
    })));
    drain(socket, services, drainAckTimeoutMs).catch((error: unknown) => logger.error({ err: error }, "queue drain failed"));
  });

  serveSealed(io, services, logger, options.addressOf);
  services.mailbox.onDelivery((deliveries) => pushDeliveries(io, deliveries));
  services.devices.onDevicesChanged(({ accountId, removedDeviceIds }) => {
    for (const id of removedDeviceIds) {
      // A removed device's credentials no longer work: close its connection, on every node.
      const removed = deviceRoom(accountId, id);
      io.in(removed).emit("closing", "removed");
      io.in(removed).disconnectSockets(true);
    }
    io.to(accountRoom(accountId)).emit("devices-changed");
  });
  services.admin.onAccountClosed((accountId, reason) => {
    // Every connection of the account, on every node.
    const room = accountRoom(accountId);
    io.in(room).emit("closing", reason);
    io.in(room).disconnectSockets(true);
  });
  return io;
}

/**
 * The `/sealed` namespace: sealed-sender sends with no credentials (the
 * authentication middleware above guards the main namespace only). Access
 * keys are checked per send, with the same rules as the REST routes.
 */
function serveSealed(io: Gateway, services: Services, logger: Logger, addressOf?: (req: IncomingMessage) => string): void {
  // The namespace has its own event map; socket.io types `of()` with the main one's.
  const sealed = io.of("/sealed") as unknown as Namespace<SealedClientToServerEvents>;
  sealed.on("connection", (socket) => {
    // The handshake's address keys the sealed-send limit (per recipient and source).
    const source = addressOf?.(socket.request) ?? socket.handshake.address;
    socket.on("send", handler(logger, sealedSocketSendRequestSchema, ({ destination, messages, accessKey, idempotencyKey }) =>
      services.sealed.send(destination, messages, accessKey, source, idempotencyKey),
    ));
    socket.on("send-multi", handler(logger, multiRecipientRequestSchema, (request) => services.sealed.sendMultiRecipient(undefined, request, source)));
  });
}

function pushDeliveries(io: Gateway, deliveries: Delivery[]): void {
  const byRoom = new Map<string, Delivery["envelope"][]>();
  for (const d of deliveries) {
    const room = liveRoom(d.accountId, d.deviceId);
    const list = byRoom.get(room);
    if (list) list.push(d.envelope);
    else byRoom.set(room, [d.envelope]);
  }
  for (const [room, envelopes] of byRoom) io.to(room).emit("envelopes", envelopes);
}

/**
 * Sends the stored queue oldest first, one confirmed batch at a time; then
 * joins the live room (so what is committed from now on is pushed), sends
 * what was committed between the last read and the join, and `queue-empty`.
 * Envelopes committed during the drain therefore arrive after the older
 * queued ones; one committed in the instant of the join may arrive twice
 * (clients de-duplicate by id).
 */
async function drain(socket: DeviceSocket, services: Services, ackTimeoutMs: number): Promise<void> {
  let cursor = 0;
  let live = false;
  while (socket.connected) {
    const batch = await services.mailbox.fetch(socket.data, cursor);
    if (!socket.connected) return;
    if (!batch.length) {
      if (!live) {
        live = true;
        await socket.join(liveRoom(socket.data.accountId, socket.data.deviceId));
        continue;
      }
      socket.emit("queue-empty");
      return;
    }
    cursor = batch[batch.length - 1]?.seq ?? cursor;
    try {
      // socket.io's types want a required callback for emitWithAck; `envelopes`
      // has an optional one because live pushes are broadcasts without acks.
      const withAck = socket.timeout(ackTimeoutMs) as unknown as { emitWithAck(event: "envelopes", batch: unknown): Promise<unknown> };
      await withAck.emitWithAck("envelopes", batch.map((d) => d.envelope));
    } catch {
      // The client did not confirm in time: stop; the rest is redelivered on its next connection.
      return;
    }
  }
}

/**
 * Wraps a client event: finds the callback, validates the payload with the
 * protocol schema, and answers with the result or the same error body the
 * REST route would give. Nothing a client sends can throw out of here.
 */
function handler<S extends z.ZodType, R>(
  logger: Logger,
  schema: S,
  run: (request: z.output<S>) => Promise<R>,
): (...args: unknown[]) => void {
  return (...args: unknown[]) => {
    const callback = args.at(-1);
    // Every client event takes a callback; without one there is nobody to answer.
    if (typeof callback !== "function") {
      logger.debug({ event: "socket event without callback" }, "ignored");
      return;
    }
    const answer = callback as (result: SocketResult<R>) => void;
    if (args.length !== 2) {
      const refusal = new HttpError("invalid_request", "Expected one payload and a callback");
      answer({ ok: false, status: refusal.status, error: refusal.toBody() });
      return;
    }
    const parsed = schema.safeParse(args[0]);
    const work = parsed.success ? run(parsed.data) : Promise.reject(invalidRequest(parsed.error, "body"));
    work.then(
      (value) => answer({ ok: true, value }),
      (error: unknown) => {
        const known = toHttpError(error);
        if (!known) logger.error({ err: error }, "unhandled socket error");
        const refusal = known ?? new HttpError("internal", "Internal error");
        answer({ ok: false, status: refusal.status, error: refusal.toBody() });
      },
    );
  };
}

function connectError(error: HttpError): Error {
  const err = new Error(error.message) as Error & { data: unknown };
  err.data = error.toBody();
  return err;
}
