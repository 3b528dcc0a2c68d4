import type { ServerConfig } from "../config.js";
import type { Database } from "../db/database.js";
import { HttpError } from "../errors.js";
import type { Services } from "../services/index.js";
import { buildOpenApiDocument, limits } from "@zimchat/protocol";
import type { RouteHandlers } from "./context.js";
import { serverVersion } from "../version.js";

async function pending(): Promise<never> {
  throw new HttpError("unavailable", "not implemented yet");
}

/**
 * The REST handlers: each maps a validated request to one service call.
 * Validation, authentication and error mapping happen in the router.
 */
export function createHandlers(config: ServerConfig, database: Database, services: Services): RouteHandlers {
  const openapi = buildOpenApiDocument({ version: serverVersion, serverName: config.serverName });
  const { accounts, keys, mailbox } = services;
  return {
    health: async () => ({ status: "ok" }),
    ready: async () => {
      const check = await database.check();
      if (!check.database || !check.migrations) throw new HttpError("unavailable", "The database is not ready");
      return { status: "ready", ...check };
    },
    openapi: async () => openapi as { openapi: string },
    register: async ({ body, clientAddress }) => accounts.register(body, clientAddress),
    whoAmI: async ({ principal }) => accounts.whoAmI(principal),
    resetIdentity: async ({ principal, body }) => accounts.resetIdentity(principal, body),
    lookupUsername: async ({ principal, params }) => accounts.lookupUsername(principal, params.username),
    uploadKeys: async ({ principal, body }) => keys.upload(principal, body),
    keyCount: async ({ principal }) => keys.counts(principal),
    preKeyBundle: async ({ principal, params }) => keys.bundles(principal, params.uuid, params.deviceId),
    sendMessages: async ({ principal, params, body, accessKey }) =>
      principal ? mailbox.send(principal, params.uuid, body.messages) : services.sealed.send(params.uuid, body.messages, accessKey),
    // TODO(helpers): these routes are being implemented; placeholders keep the tree compiling.
    setAttributes: async ({ principal, body }) => services.sealed.setAttributes(principal, body),
    createLink: pending,
    confirmLink: pending,
    linkStatus: pending,
    linkDevice: pending,
    listDevices: pending,
    removeDevice: pending,
    trustRoot: async () => services.certificates.trustRoot(),
    senderCertificate: async ({ principal }) => services.certificates.senderCertificate(principal),
    sendMultiRecipient: async ({ principal, body }) => services.sealed.sendMultiRecipient(principal, body),
    fetchMessages: async ({ principal }) => {
      // One more than a page tells whether there is more.
      const page = await mailbox.fetch(principal, 0, limits.maxEnvelopesPerBatch + 1);
      return { envelopes: page.slice(0, limits.maxEnvelopesPerBatch).map((d) => d.envelope), more: page.length > limits.maxEnvelopesPerBatch };
    },
    ackMessages: async ({ principal, body }) => ({ deleted: await mailbox.ack(principal, body.ids) }),
  };
}
