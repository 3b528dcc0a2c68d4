import type { ServerConfig } from "../config.js";
import type { Database } from "../db/database.js";
import { HttpError } from "../errors.js";
import type { Services } from "../services/index.js";
import type { StorageHealth } from "../faults/storage-full.js";
import { buildAsyncApiDocument, buildOpenApiDocument, limits, type RateLimitName } from "@zimchat/protocol";
import type { RouteGuards, RouteHandlers } from "./context.js";
import { serverVersion } from "../version.js";

/**
 * The REST handlers: each maps a validated request to one service call.
 * Validation, authentication and error mapping happen in the router.
 */
export function createHandlers(
  config: ServerConfig,
  database: Database,
  services: Services,
  storage?: StorageHealth,
): RouteHandlers {
  // Both documents state this server's own limits: the settings the rate limiter and the gateway use.
  const documented = { version: serverVersion, serverName: config.serverName, rateLimits: config.rateLimits };
  const openapi = buildOpenApiDocument(documented);
  // `--rate-limits off` lifts the per-address connection caps too (see createApp): null, unlimited.
  const connectionLimits = config.rateLimits
    ? { ...config.connectionLimits }
    : { ...config.connectionLimits, handshakesPerAddress: null, sealedPerAddress: null };
  const asyncapi = buildAsyncApiDocument({ ...documented, connectionLimits });
  const { accounts, keys, mailbox } = services;
  return {
    health: async () => ({ status: "ok" }),
    ready: async () => {
      const check = await database.check();
      if (!check.database || !check.migrations) throw new HttpError("unavailable", "The database is not ready");
      // Not ready while a full disk refuses writes: a load balancer sends users elsewhere until space is freed.
      if (storage?.full()) throw new HttpError("unavailable", "The server's storage is full");
      return { status: "ready", ...check };
    },
    openapi: async () => openapi as { openapi: string },
    asyncapi: async () => asyncapi as { asyncapi: string },
    register: async ({ body, clientAddress }) => accounts.register(body, clientAddress),
    whoAmI: async ({ principal }) => accounts.whoAmI(principal),
    resetIdentity: async ({ principal, body }) =>
      services.devices.resetIdentity(principal, () => accounts.resetIdentity(principal, body)),
    lookupUsername: async ({ principal, params }) => accounts.lookupUsername(principal, params.username),
    uploadKeys: async ({ principal, body }) => keys.upload(principal, body),
    keyCount: async ({ principal }) => keys.counts(principal),
    preKeyBundle: async ({ principal, params }) => keys.bundles(principal, params.uuid, params.deviceId),
    sendMessages: async ({ principal, params, body, accessKey, clientAddress }) =>
      principal
        ? mailbox.send(principal, params.uuid, body.messages, body.idempotencyKey)
        : services.sealed.send(params.uuid, body.messages, accessKey, clientAddress, body.idempotencyKey),
    setAttributes: async ({ principal, body }) => services.sealed.setAttributes(principal, body),
    createLink: async ({ clientAddress }) => services.devices.createLink(clientAddress),
    confirmLink: async ({ principal, params, body }) => services.devices.confirmLink(principal, params.code, body),
    linkStatus: async ({ params }) => services.devices.linkStatus(params.code),
    linkDevice: async ({ body }) => services.devices.link(body),
    listDevices: async ({ principal }) => services.devices.list(principal),
    removeDevice: async ({ principal, params }) => services.devices.remove(principal, params.deviceId),
    trustRoot: async () => services.certificates.trustRoot(),
    serverDocument: async () => services.federation.serverDocument(),
    federationLookupUsername: async ({ origin, params }) => services.federation.lookupUsername(origin, params.username),
    federationPreKeyBundle: async ({ origin, params }) => keys.bundles({ origin }, params.uuid, params.deviceId),
    federationSend: async ({ origin, body }) => services.federation.receive(origin, body),
    remoteSendMessages: async ({ principal, params, body, accessKey, clientAddress }) =>
      services.federation.relay(principal ?? null, params.server, params.uuid, body.messages, {
        accessKey,
        clientAddress,
        idempotencyKey: body.idempotencyKey,
      }),
    remoteLookupUsername: async ({ principal, params }) =>
      services.federation.remoteLookupUsername(principal, params.server, params.username),
    remotePreKeyBundle: async ({ principal, params }) =>
      services.federation.remotePreKeyBundle(principal, params.server, params.uuid, params.deviceId),
    senderCertificate: async ({ principal }) => services.certificates.senderCertificate(principal),
    sendMultiRecipient: async ({ principal, body, clientAddress }) =>
      services.sealed.sendMultiRecipient(principal, body, clientAddress),
    fetchMessages: async ({ principal }) => {
      // One more than a page tells whether there is more.
      const page = await mailbox.fetch(principal, 0, limits.maxEnvelopesPerBatch + 1);
      return {
        envelopes: page.slice(0, limits.maxEnvelopesPerBatch).map((d) => d.envelope),
        more: page.length > limits.maxEnvelopesPerBatch,
      };
    },
    ackMessages: async ({ principal, body }) => ({ deleted: await mailbox.ack(principal, body.ids) }),
  };
}

/**
 * The checks that run before a route's body is read (see {@link RouteGuards}):
 * a sealed send (no credentials) must carry the recipient's access key, or
 * the recipient must accept sealed messages from anyone. A multi-recipient
 * send carries its access keys in its body, so it is checked after.
 */
export function createGuards(services: Services): RouteGuards {
  return {
    sendMessages: async ({ principal, params, accessKey }) => {
      if (!principal) await services.sealed.authorize(params.uuid, accessKey);
    },
  };
}

/** The server's rate limits and the protocol's documented ones are the same names (a compile error otherwise). */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const rateLimitNamesMatch: Same<keyof Exclude<ServerConfig["rateLimits"], false>, RateLimitName> = true;
void rateLimitNamesMatch;
