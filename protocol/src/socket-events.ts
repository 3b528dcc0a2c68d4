import { z } from "zod";
import { errorBodySchema } from "./errors.js";
import { remoteDeliveryFailedSchema } from "./federation.js";
import { limits } from "./limits.js";
import {
  ackRequestSchema,
  ackResponseSchema,
  envelopeSchema,
  sendMessagesResponseSchema,
  socketSendRequestSchema,
} from "./messages.js";
import type { RateLimitName } from "./rate-limits.js";
import { multiRecipientRequestSchema, multiRecipientResponseSchema, sealedSocketSendRequestSchema } from "./sealed.js";
import type {
  ClientToServerEvents,
  DisconnectReason,
  SealedClientToServerEvents,
  ServerToClientEvents,
} from "./socket.js";

/** The answer a client event's callback receives (`SocketResult<T>`), for the value schema `value`. */
export function socketResultSchema<T extends z.ZodType>(value: T, id: string): z.ZodType {
  return z
    .discriminatedUnion("ok", [
      z.object({ ok: z.literal(true), value }),
      z.object({
        ok: z.literal(false),
        status: z.number().int().describe("The HTTP status the REST route would answer with"),
        error: errorBodySchema,
      }),
    ])
    .meta({ id });
}

/** The Socket.IO handshake `auth` of the default namespace: the same credentials as HTTP Basic. */
export const socketAuthSchema = z
  .strictObject({
    username: z.string().max(200).describe("`uuid.deviceId`, as the HTTP Basic user name"),
    password: z.string().max(200).describe("The device password"),
  })
  .meta({ id: "SocketAuth" });

const disconnectReasons = [
  "displaced",
  "shutdown",
  "removed",
  "disabled",
  "deleted",
] as const satisfies readonly DisconnectReason[];
/** Fails to compile when `DisconnectReason` gains a reason the list above lacks. */
const everyReasonListed: Exclude<DisconnectReason, (typeof disconnectReasons)[number]> extends never ? true : never =
  true;
void everyReasonListed;

/** Why the server closes a connection (the `closing` event). */
export const disconnectReasonSchema = z
  .enum(disconnectReasons)
  .describe(
    "displaced: a newer connection of the same device; shutdown: the server stops; removed: the device was unlinked; " +
      "disabled / deleted: an admin disabled or deleted the account",
  )
  .meta({ id: "DisconnectReason" });

/** A client->server event: its one payload and what its callback receives. */
export interface ClientEventSpec {
  summary: string;
  payload: z.ZodType;
  /** The one argument of the callback (every client event takes one). */
  ack: z.ZodType;
  /** The rate limits the event takes from (see `rateLimitInfo`). */
  rateLimits: readonly RateLimitName[];
}

/** A server->client event: its arguments (none: no payload) and whether the client must confirm it. */
export interface ServerEventSpec {
  summary: string;
  payload?: z.ZodType;
  /** The client calls the event's callback (with no argument) to confirm it; when. */
  ack?: string;
}

/** One Socket.IO namespace: how a connection authenticates and its events in both directions. */
export interface NamespaceSpec {
  description: string;
  /** The handshake `auth` schema; absent: the namespace takes no credentials. */
  auth?: z.ZodType;
  /** The limits that apply to the handshake. */
  handshakeRateLimits: readonly RateLimitName[];
  clientToServer: Record<string, ClientEventSpec>;
  serverToClient: Record<string, ServerEventSpec>;
}

const sendResultSchema = socketResultSchema(sendMessagesResponseSchema, "SendResult");

const mainClientEvents = {
  send: {
    summary: "Send one envelope per destination device; same rules and answers as `PUT /v1/messages/{uuid}`",
    payload: socketSendRequestSchema,
    ack: sendResultSchema,
    rateLimits: ["send"],
  },
  ack: {
    summary: "Delete delivered envelopes; same rules and answers as `POST /v1/messages/ack`",
    payload: ackRequestSchema,
    ack: socketResultSchema(ackResponseSchema, "AckResult"),
    rateLimits: [],
  },
} as const satisfies Record<keyof ClientToServerEvents, ClientEventSpec>;

const mainServerEvents = {
  envelopes: {
    summary: `Envelopes for this device, oldest first (a drain batch holds at most ${limits.maxEnvelopesPerBatch}); de-duplicate by id`,
    payload: z.array(envelopeSchema),
    ack:
      "During the drain of the stored queue after connecting, the server waits for the callback before the next batch " +
      "(30 s, then it stops and redelivers on the next connection); live pushes after `queue-empty` take no callback. " +
      "The callback does not delete anything: acknowledge with `ack` once the envelopes are stored",
  },
  "queue-empty": { summary: "The stored queue has been delivered; later envelopes arrive as they are sent" },
  "devices-changed": {
    summary: "The account's device list changed (a device was linked or removed): fetch `GET /v1/devices`",
  },
  closing: {
    summary: "Sent just before the server closes the connection, with the reason",
    payload: disconnectReasonSchema,
  },
  "keys-draining": {
    summary:
      "This device's one-time pre-keys are being claimed faster than the server's per-device budget allows: check " +
      "`GET /v1/keys/count` and refill. At most once a minute",
  },
  "remote-delivery-failed": {
    summary:
      "A send to another server that was queued (`queued: true` from `PUT /v1/federation/{server}/messages/{uuid}`) will not be " +
      "delivered, and why: re-encrypt for the recipient's current devices and send again. To the sending device only",
    payload: remoteDeliveryFailedSchema,
    ack: "Confirm with the callback once handled: until then the server sends it again on every connection (until the envelope lifetime ends)",
  },
} as const satisfies Record<keyof ServerToClientEvents, ServerEventSpec>;

const sealedClientEvents = {
  send: {
    summary:
      "A sealed-sender send without credentials; same rules as `PUT /v1/messages/{uuid}` with `Unidentified-Access-Key`; every message must be `sealed`",
    payload: sealedSocketSendRequestSchema,
    ack: sendResultSchema,
    rateLimits: ["sealedSend"],
  },
  "send-multi": {
    summary:
      "A multi-recipient sealed-sender send; same rules as `PUT /v1/messages/multi-recipient` without credentials",
    payload: multiRecipientRequestSchema,
    ack: socketResultSchema(multiRecipientResponseSchema, "MultiRecipientResult"),
    rateLimits: ["sealedSend"],
  },
} as const satisfies Record<keyof SealedClientToServerEvents, ClientEventSpec>;

/**
 * Every Socket.IO namespace of the homeserver with the schema of every
 * event: the runtime twin of the event maps in `socket.ts` (the compiler
 * checks that both name the same events). The gateway validates client
 * payloads with these schemas and `/asyncapi.json` is generated from them.
 */
export const socketNamespaces = {
  "/": {
    description:
      "The authenticated connection of one device: the handshake `auth` carries its credentials (a wrong or missing one is a " +
      "`connect_error` whose `data` is the error body, e.g. 401 `unauthorized`). One connection per device: a newer one displaces " +
      "the older (`closing`: `displaced`). After connecting, the stored queue is drained in confirmed batches, then `queue-empty`, " +
      "then envelopes are pushed as they are sent.",
    auth: socketAuthSchema,
    handshakeRateLimits: ["failedAuthPerAddress", "failedAuthPerAddressAndDevice"],
    clientToServer: mainClientEvents,
    serverToClient: mainServerEvents,
  },
  "/sealed": {
    description:
      "Sealed-sender sends with no credentials in the handshake. Open it on a connection of its own (socket.io-client " +
      "`forceNew`) so the server cannot tie it to the authenticated one. Connections per address and in total are capped " +
      "(`connect_error` 429 `too_many_connections`), and one that sends no event for a while is closed.",
    handshakeRateLimits: [],
    clientToServer: sealedClientEvents,
    serverToClient: {},
  },
} as const satisfies Record<string, NamespaceSpec>;

/** A namespace of {@link socketNamespaces}. */
export type SocketNamespace = keyof typeof socketNamespaces;
