import { mkdtemp, open, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Router, type Request, type RequestHandler, type Response } from "express";
import { adminRoutes, bodyLimitOf, streamRoutes, type AdminRouteName, type RouteSpec } from "@zimchat/protocol";
import type { z } from "zod";
import type { ServerConfig } from "../config.js";
import type { Database } from "../db/database.js";
import { parseDatabaseUrl } from "../db/database-url.js";
import { backupSqlite } from "../db/sqlite-backup.js";
import { HttpError } from "../errors.js";
import type { Gateway } from "../gateway/gateway.js";
import type { Logger } from "../logger.js";
import type { Services } from "../services/index.js";
import { bearerAuth } from "./bearer-auth.js";
import { jsonBodyReader, type RefusalCounter } from "./json-body.js";
import { invalidRequest } from "./router.js";

type Route<K extends AdminRouteName> = (typeof adminRoutes)[K];
type Infer<S> = S extends z.ZodType ? z.output<S> : undefined;

/** What an admin handler receives: validated params, query and body. */
interface AdminContext<K extends AdminRouteName> {
  params: Route<K> extends { params: infer P } ? Infer<P> : Record<string, never>;
  query: Route<K> extends { query: infer Q } ? Infer<Q> : Record<string, never>;
  body: Route<K> extends { body: infer B } ? Infer<B> : undefined;
}

type AdminResult<K extends AdminRouteName> = Route<K>["success"] extends { schema: infer S }
  ? z.input<S & z.ZodType>
  : void;

/** One handler per route of the protocol's admin table. */
type AdminHandlers = { [K in AdminRouteName]: (ctx: AdminContext<K>) => Promise<AdminResult<K>> };

/**
 * The admin API (`/admin/v1`, the protocol's `adminRoutes` and the
 * `adminBackup` stream route), behind the admin token. Without a token in
 * the config the router is empty: the routes answer 404 like any unknown path.
 */
export function createAdminRouter(
  config: ServerConfig,
  database: Database,
  services: Services,
  io: Gateway,
  logger: Logger,
  refusals?: RefusalCounter,
): Router {
  const router = Router();
  if (config.adminToken === undefined) return router;
  router.use(
    "/admin",
    bearerAuth(config.adminToken, "zimchat-admin", (req) =>
      logger.warn({ route: `${req.method} /admin` }, "admin token refused"),
    ),
  );
  const { admin } = services;
  const handlers: AdminHandlers = {
    adminCreateInvite: async ({ body }) => admin.createInvite(body),
    adminListInvites: async () => admin.listInvites(),
    adminRevokeInvite: async ({ params }) => admin.revokeInvite(params.id),
    adminListAccounts: async ({ query }) => admin.listAccounts(query.cursor, query.limit),
    adminDisableAccount: async ({ params }) => admin.setDisabled(params.account, true),
    adminEnableAccount: async ({ params }) => admin.setDisabled(params.account, false),
    adminDeleteAccount: async ({ params }) => admin.deleteAccount(params.account),
    adminRemoveDevice: async ({ params }) => admin.removeDevice(params.account, params.deviceId),
    // fetchSockets asks every node when a cluster adapter is installed.
    adminStats: async () => admin.stats(async () => (await io.fetchSockets()).length),
    adminFederationPeers: async () => ({ peers: await services.federation.listPeers() }),
    adminBlockPeer: async ({ params }) => {
      await services.federation.block(params.server);
      logger.info({ peer: params.server }, "federation peer blocked");
    },
    adminUnblockPeer: async ({ params }) => {
      await services.federation.unblock(params.server);
      logger.info({ peer: params.server }, "federation peer unblocked");
    },
    adminRotateCertificate: async () => {
      const rotated = admin.rotateCertificate();
      logger.info({ keyId: rotated.keyId, previousKeyId: rotated.previousKeyId }, "server certificate rotated");
      return rotated;
    },
  };
  for (const [name, route] of Object.entries(adminRoutes) as [AdminRouteName, RouteSpec][]) {
    const handler = handlers[name] as (ctx: unknown) => Promise<unknown>;
    // After the bearer check above: the body (small default limit) is read only for the admin.
    const readBody = route.body ? jsonBodyReader(bodyLimitOf(route), refusals) : null;
    router[route.method](
      route.path,
      logged(logger, route, async (req, res) => {
        await readBody?.(req, res);
        await handle(route, handler, req, res);
      }),
    );
  }
  const backup = streamRoutes.adminBackup;
  router[backup.method](
    backup.path,
    logged(logger, backup, (_req, res) => sendBackup(config, database, res)),
  );
  return router;
}

function logged(
  logger: Logger,
  route: Pick<RouteSpec, "method" | "path">,
  run: (req: Request, res: Response) => Promise<void>,
): RequestHandler {
  return (req, res, next) => {
    res.on("finish", () =>
      logger.info({ route: `${route.method.toUpperCase()} ${route.path}`, status: res.statusCode }, "admin request"),
    );
    run(req, res).catch(next);
  };
}

async function handle(
  route: RouteSpec,
  handler: (ctx: unknown) => Promise<unknown>,
  req: Request,
  res: Response,
): Promise<void> {
  const parse = (schema: z.ZodType | undefined, value: unknown, where: "params" | "query" | "body"): unknown => {
    if (!schema) return where === "body" ? undefined : {};
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw invalidRequest(parsed.error, where);
    return parsed.data;
  };
  const params = parse(route.params, req.params, "params");
  const query = parse(route.query, req.query, "query");
  const body = parse(route.body, req.body ?? {}, "body");
  const result = await handler({ params, query, body });
  if (route.success.schema) res.status(route.success.status).json(result);
  else res.status(route.success.status).end();
}

/** Backs the SQLite database up into a private temp directory beside it, streams the file, removes it. */
async function sendBackup(config: ServerConfig, database: Database, res: Response): Promise<void> {
  const target = parseDatabaseUrl(config.databaseUrl);
  if (target.provider !== "sqlite" || database.provider !== "sqlite") {
    throw new HttpError("backup_unsupported", "Online backup covers SQLite only: back PostgreSQL up with pg_dump");
  }
  // Beside the database (room for a copy of it, unlike a small /tmp); mkdtemp
  // makes the directory 0700: the copy holds everything the database holds.
  const dir = await mkdtemp(join(dirname(target.path), ".backup-"));
  let file;
  try {
    const path = join(dir, "zimchat.db");
    await backupSqlite(target.path, path);
    file = await open(path, "r");
  } finally {
    // Removed before a byte is sent: the open handle keeps the copy readable until the stream ends.
    await rm(dir, { recursive: true, force: true });
  }
  try {
    const { size } = await file.stat();
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    res.status(200).set({
      "Content-Type": "application/vnd.sqlite3",
      "Content-Length": String(size),
      "Content-Disposition": `attachment; filename="zimchat-${stamp}.db"`,
    });
    await pipeline(file.createReadStream({ autoClose: false }), res);
  } finally {
    await file.close();
  }
}
