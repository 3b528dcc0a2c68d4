import { errorBodySchema } from "./errors.js";
import { toComponentSchema, type JsonSchema } from "./json-schema.js";
import { limits } from "./limits.js";
import { rateLimitEntries, type RateLimitSettings } from "./rate-limits.js";
import { socketNamespaces, type NamespaceSpec } from "./socket-events.js";

/** What the AsyncAPI document says about the server that serves it. */
export interface AsyncApiInfo {
  version: string;
  serverName: string;
  /**
   * The server's rate limits as configured (`false`: none); each operation states those that apply to it. Absent: not
   * stated.
   */
  rateLimits?: RateLimitSettings;
  /**
   * The server's caps on connections without credentials (handshakes in
   * progress, `/sealed` connections) and their timeouts, as configured
   * (null: unlimited).
   */
  connectionLimits?: Record<string, number | null>;
}

/** A channel id for a namespace: `default` for `/`, the name otherwise. */
function channelId(namespace: string): string {
  return namespace === "/" ? "default" : namespace.slice(1);
}

/** A message id: the event name, camel-cased, prefixed by the channel, suffixed for acknowledgements. */
function messageId(channel: string, event: string, suffix = ""): string {
  const camel = event.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
  return `${channel}${camel[0]!.toUpperCase()}${camel.slice(1)}${suffix}`;
}

/**
 * The AsyncAPI 3.0 document of the homeserver's Socket.IO events, built from
 * {@link socketNamespaces}, the same schemas the gateway validates with.
 * Socket.IO specifics are stated in `x-socketio` extensions: the event name
 * (`event`), and whether the message is a callback answer (`ackOf`).
 * From the server's point of view: client events are `receive` operations
 * whose `reply` is the callback's argument; server events are `send` operations.
 */
export function buildAsyncApiDocument(info: AsyncApiInfo): Record<string, unknown> {
  const refs = new Map<string, JsonSchema>();
  const messages: Record<string, unknown> = {};
  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};
  const errorRef = toComponentSchema(errorBodySchema, refs, "draft-7");

  for (const [namespace, spec] of Object.entries(socketNamespaces) as [string, NamespaceSpec][]) {
    const channel = channelId(namespace);
    const channelRef = { $ref: `#/channels/${channel}` };
    const channelMessages: Record<string, unknown> = {};
    const add = (id: string, message: Record<string, unknown>): { $ref: string } => {
      messages[id] = message;
      channelMessages[id] = { $ref: `#/components/messages/${id}` };
      return { $ref: `#/channels/${channel}/messages/${id}` };
    };

    for (const [event, e] of Object.entries(spec.clientToServer)) {
      const request = add(messageId(channel, event), {
        name: event,
        title: `${event} (client -> server)`,
        summary: e.summary,
        contentType: "application/json",
        payload: toComponentSchema(e.payload, refs, "draft-7"),
        "x-socketio": { event, direction: "client-to-server", callback: true },
      });
      const answer = add(messageId(channel, event, "Ack"), {
        name: `${event} callback`,
        title: `${event} acknowledgement`,
        summary:
          "The one argument of the event's callback: `{ ok: true, value }`, or `{ ok: false, status, error }` with the REST route's status and error body",
        contentType: "application/json",
        payload: toComponentSchema(e.ack, refs, "draft-7"),
        "x-socketio": { ackOf: event },
      });
      operations[`${channel}.${event}`] = {
        action: "receive",
        channel: channelRef,
        title: `${event} on ${namespace}`,
        summary: e.summary,
        messages: [request],
        ...(spec.auth && { security: [{ $ref: "#/components/securitySchemes/handshakeAuth" }] }),
        reply: { channel: channelRef, messages: [answer] },
        ...(info.rateLimits !== undefined && { "x-rate-limit": rateLimitEntries(e.rateLimits, info.rateLimits) }),
      };
    }
    for (const [event, e] of Object.entries(spec.serverToClient)) {
      const pushed = add(messageId(channel, event), {
        name: event,
        title: `${event} (server -> client)`,
        summary: e.summary,
        contentType: "application/json",
        ...(e.payload && { payload: toComponentSchema(e.payload, refs, "draft-7") }),
        "x-socketio": { event, direction: "server-to-client", callback: e.ack !== undefined },
      });
      const operation: Record<string, unknown> = {
        action: "send",
        channel: channelRef,
        title: `${event} on ${namespace}`,
        summary: e.summary,
        messages: [pushed],
      };
      if (e.ack) {
        const confirm = add(messageId(channel, event, "Ack"), {
          name: `${event} callback`,
          title: `${event} confirmation`,
          summary: e.ack,
          "x-socketio": { ackOf: event, arguments: [] },
        });
        operation.reply = { channel: channelRef, messages: [confirm] };
      }
      operations[`${channel}.${event}`] = operation;
    }

    channels[channel] = {
      address: namespace,
      title: namespace === "/" ? "Default namespace (authenticated device)" : `${namespace} namespace`,
      description: spec.description,
      messages: channelMessages,
      "x-socketio": {
        namespace,
        handshakeAuth: spec.auth ? toComponentSchema(spec.auth, refs, "draft-7") : null,
        connectError: {
          description: "A refused handshake: `connect_error` with `data` set to the error body",
          schema: errorRef,
        },
        ...(info.rateLimits !== undefined && {
          handshakeRateLimits: rateLimitEntries(spec.handshakeRateLimits, info.rateLimits),
        }),
      },
    };
  }

  return {
    asyncapi: "3.0.0",
    info: {
      title: `ZimChat homeserver Socket.IO events (${info.serverName})`,
      version: info.version,
      license: { name: "AGPL-3.0-only" },
      description:
        "Real-time delivery and sends over Socket.IO (protocol v5, Engine.IO v4) on the homeserver's HTTP port, path `/socket.io/`. " +
        "Each channel is a Socket.IO namespace; each message is one event (its `name`), whose single argument is the message's " +
        "payload. Every client event takes a callback, which receives the reply message; an event sent without a callback is ignored, " +
        "and one with more than one payload argument is answered with 400 `invalid_request`. " +
        `One Socket.IO packet carries at most ${limits.maxBodyBytes} bytes (\`x-max-payload-bytes\`; the connection is closed above it). ` +
        "Each operation's `x-rate-limit` lists the server's rate limits it takes from (`count` per `windowSeconds` per `key`; " +
        'a refusal is the callback `{ ok: false, status: 429, error: { code: "rate_limited", retryAfterSeconds } }`). ' +
        "The REST API is described at `/openapi.json`.",
    },
    defaultContentType: "application/json",
    servers: {
      homeserver: {
        host: info.serverName,
        protocol: "ws",
        pathname: "/socket.io/",
        title: "This homeserver",
        description:
          "Socket.IO on the homeserver's own HTTP(S) port (HTTP long-polling upgraded to WebSocket, or WebSocket directly)",
      },
    },
    channels,
    operations,
    components: {
      schemas: Object.fromEntries([...refs].sort(([a], [b]) => a.localeCompare(b))),
      messages,
      securitySchemes: {
        handshakeAuth: {
          type: "userPassword",
          description:
            'Default namespace only: the Socket.IO handshake `auth` object `{ username: "uuid.deviceId", password }` (see `x-socketio.handshakeAuth`)',
        },
      },
    },
    "x-max-payload-bytes": limits.maxBodyBytes,
    ...(info.connectionLimits && { "x-connection-limits": info.connectionLimits }),
  };
}
