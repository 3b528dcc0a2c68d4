import type { IncomingMessage, Server as HttpServer } from "node:http";
import { createAdapter } from "@socket.io/redis-adapter";
import { Server, type Namespace, type Socket } from "socket.io";
import {
  limits,
  socketNamespaces,
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
import { ConnectionGuard } from "./connection-guard.js";
import { defaultConnectionLimits, type ConnectionLimits } from "./connection-limits.js";
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
  /**
   * Caps on handshakes in progress and credential-free `/sealed` connections.
   * @default {@link defaultConnectionLimits}
   */
  connectionLimits?: ConnectionLimits;
  /** The client's address of a request (keys the per-address caps). @default the TCP peer */
  clientAddress?: (request: IncomingMessage) => string;
  /** Told the reason of every refused or idle-closed connection (metrics). */
  refused?: (reason: string) => void;
}

/**
 * The Socket.IO gateway. A device authenticates in the handshake with the
 * same credentials as HTTP Basic, joins its own room (displacing an older
 * connection of the same device), receives its stored queue in batches
 * (each confirmed before the next), then `queue-empty`, then envelopes as
 * they are committed. It sends and acknowledges with the same schemas and
 * rules as the REST routes.
 */
export function createGateway(
  httpServer: HttpServer,
  services: Services,
  logger: Logger,
  options: GatewayOptions = {},
): Gateway {
  const drainAckTimeoutMs = options.drainAckTimeoutMs ?? 30_000;
  const clientAddress = options.clientAddress ?? ((request: IncomingMessage) => request.socket.remoteAddress ?? "");
  const refused = options.refused ?? (() => {});
  const guard = new ConnectionGuard(options.connectionLimits ?? defaultConnectionLimits, clientAddress, refused);
  const io: Gateway = new Server(httpServer, {
    // Sends need the full body size on both namespaces (a multi-recipient
    // send on /sealed is up to 1.5 MiB before base64); the caps below bound
    // how many unauthenticated connections can hold such a buffer.
    maxHttpBufferSize: limits.maxBodyBytes,
    // Refused before the WebSocket exists, from in-memory counters only.
    allowRequest: guard.allowRequest,
    // A connection that joins no namespace in time is closed (and uncounted).
    connectTimeout: guard.limits.handshakeTimeoutMs,
    serveClient: false,
    ...(options.redis && {
      adapter: createAdapter(options.redis.client, options.redis.subscriber, {
        key: `${options.redis.prefix}:socket.io`,
      }),
    }),
  });

  io.use((socket, next) => {
    const auth = socket.handshake.auth as { username?: unknown; password?: unknown };
    if (
      typeof auth.username !== "string" ||
      typeof auth.password !== "string" ||
      auth.username.length > 200 ||
      auth.password.length > 200
    ) {
      next(connectError(unauthorized()));
      return;
    }
    services.accounts.authenticate(auth.username, auth.password, clientAddress(socket.request)).then(
      (principal) => {
        socket.data = principal;
        next();
      },
      (error: unknown) => next(connectError(toHttpError(error) ?? new HttpError("internal", "Internal error"))),
    );
  });

  io.engine.on("connection", (connection: Parameters<ConnectionGuard["opened"]>[0]) => guard.opened(connection));
  io.on("connection", (socket) => {
    guard.authenticated(socket.conn);
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

    socket.on(
      "send",
      handler(logger, socketNamespaces["/"].clientToServer.send.payload, (request) =>
        services.mailbox.send(socket.data, request.destination, request.messages, request.idempotencyKey),
      ),
    );
    socket.on(
      "ack",
      handler(logger, socketNamespaces["/"].clientToServer.ack.payload, async (request) => ({
        deleted: await services.mailbox.ack(socket.data, request.ids),
      })),
    );
    drain(socket, services, drainAckTimeoutMs)
      .then(() => pushFailures(socket, services))
      .catch((error: unknown) => logger.error({ err: error }, "queue drain failed"));
  });

  serveSealed(io, services, logger, guard, refused, clientAddress);
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
  // The device whose one-time keys are being drained refills (its room is on whichever node holds it).
  services.keys.onDrain(({ accountId, deviceId }) => io.to(deviceRoom(accountId, deviceId)).emit("keys-draining"));
  // A queued send to another server was given up: its sending device is told, on whichever node holds it.
  services.federation.outbox.onFailure((accountId, deviceId, failure) => {
    const broadcast = io.to(deviceRoom(accountId, deviceId)).timeout(failureAckTimeoutMs) as unknown as {
      emit(event: string, payload: unknown, callback: (error: unknown, answers: unknown[]) => void): void;
    };
    broadcast.emit("remote-delivery-failed", failure, (_error, answers) => {
      if (!answers.length) return;
      services.federation.outbox
        .confirmFailure({ accountId, deviceId }, failure.id)
        .catch((error: unknown) => logger.error({ err: error }, "failure notice confirmation failed"));
    });
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
function serveSealed(
  io: Gateway,
  services: Services,
  logger: Logger,
  guard: ConnectionGuard,
  refused: (reason: string) => void,
  clientAddress: (request: IncomingMessage) => string,
): void {
  // The namespace has its own event map; socket.io types `of()` with the main one's.
  const sealed = io.of("/sealed") as unknown as Namespace<SealedClientToServerEvents>;
  sealed.use((socket, next) => {
    if (guard.admitSealed(socket.conn)) {
      next();
      return;
    }
    next(
      connectError(
        new HttpError(
          "too_many_connections",
          "Too many connections without credentials from this address; try again later",
        ),
      ),
    );
    // Socket.IO writes the refusal on the next tick; then the connection (and its descriptor) goes.
    setImmediate(() => socket.conn.close());
  });
  sealed.on("connection", (socket) => {
    // Idle: no event for sealedIdleMs. Closed by the server, so the client does not reconnect by itself.
    const idle = setTimeout(() => {
      refused("sealed_socket_idle");
      socket.disconnect(true);
    }, guard.limits.sealedIdleMs);
    socket.use((_packet, next) => {
      idle.refresh();
      next();
    });
    socket.once("disconnect", () => clearTimeout(idle));
    // The handshake's address keys the sealed-send limit (per recipient and source).
    const source = clientAddress(socket.request);
    socket.on(
      "send",
      handler(
        logger,
        socketNamespaces["/sealed"].clientToServer.send.payload,
        ({ destination, messages, accessKey, idempotencyKey }) =>
          services.sealed.send(destination, messages, accessKey, source, idempotencyKey),
      ),
    );
    socket.on(
      "send-multi",
      handler(logger, socketNamespaces["/sealed"].clientToServer["send-multi"].payload, (request) =>
        services.sealed.sendMultiRecipient(undefined, request, source),
      ),
    );
  });
}

/** How long a device has to confirm a `remote-delivery-failed` notice (unconfirmed: sent again when it reconnects). */
const failureAckTimeoutMs = 60_000;

/** After the drain: the failure notices of queued sends to other servers the device has not confirmed. */
async function pushFailures(socket: DeviceSocket, services: Services): Promise<void> {
  for (const failure of await services.federation.outbox.failuresFor(socket.data)) {
    if (!socket.connected) return;
    socket.timeout(failureAckTimeoutMs).emit("remote-delivery-failed", failure, (error: unknown) => {
      if (error) return;
      void services.federation.outbox.confirmFailure(socket.data, failure.id).catch(() => undefined);
    });
  }
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
      const withAck = socket.timeout(ackTimeoutMs) as unknown as {
        emitWithAck(event: "envelopes", batch: unknown): Promise<unknown>;
      };
      await withAck.emitWithAck(
        "envelopes",
        batch.map((d) => d.envelope),
      );
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
