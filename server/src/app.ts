import { createServer, type Server as HttpServer } from "node:http";
import express, { type Express } from "express";
import { connectRedis, JobLocks, type ClusterRedis } from "./cluster/redis.js";
import { ConfigError, type ServerConfig } from "./config.js";
import { openDatabase, type Database } from "./db/database.js";
import { HttpError } from "./errors.js";
import { createGateway, type Gateway } from "./gateway/gateway.js";
import { createAdminRouter } from "./http/admin-router.js";
import { createAttachmentRouter } from "./http/attachments.js";
import { bearerAuth } from "./http/bearer-auth.js";
import { clientAddressOf } from "./http/client-address.js";
import { createGuards, createHandlers } from "./http/handlers.js";
import { methodNotAllowed, servedRoutes } from "./http/method-not-allowed.js";
import { createRouter, errorMiddleware } from "./http/router.js";
import { watchEventLoop } from "./faults/event-loop-stalls.js";
import { StorageHealth } from "./faults/storage-full.js";
import { createLogger, droppedLogLines, type Logger } from "./logger.js";
import { Metrics } from "./metrics/metrics.js";
import { loadPlugins, type LoadedPlugin } from "./plugins/load-plugins.js";
import { PluginHost } from "./plugins/plugin-host.js";
import { createPluginRouter } from "./plugins/plugin-routes.js";
import { createServices, type Services } from "./services/index.js";
import { PluginStore } from "./stores/plugin-store.js";

/** What {@link createApp} needs besides the config. */
export interface AppDeps {
  database: Database;
  logger: Logger;
  /**
   * The plugins, set up (see {@link setUpPlugins}) but not started: their
   * hooks are wired into the services and their routes mounted; the caller
   * starts them (`plugins.start()`), as {@link openHomeserver} does.
   * Absent: no plugins (and `config.plugins` must be empty).
   */
  plugins?: PluginHost;
  /**
   * The cluster's Redis (see {@link connectRedis}), required when
   * `config.redisUrl` is set: Socket.IO adapter, rate limits, job locks.
   * The homeserver closes it on `close()`.
   */
  redis?: ClusterRedis;
}

/** A homeserver, built but not listening. */
export interface Homeserver {
  app: Express;
  httpServer: HttpServer;
  io: Gateway;
  services: Services;
  /** The Prometheus metrics (served at `/metrics` unless `config.metrics` is false). */
  metrics: Metrics;
  database: Database;
  logger: Logger;
  /** The server plugins (an empty host when there are none). */
  plugins: PluginHost;
  /**
   * Graceful shutdown: stop accepting connections and requests, let
   * in-flight commits finish, tell sockets why and close them, call the
   * plugins' `stop` hooks, close the database.
   */
  close(): Promise<void>;
}

/**
 * Builds the Express app and the Socket.IO gateway on one HTTP server,
 * without listening, so tests drive the real app (Supertest, socket.io-client).
 */
export function createApp(config: ServerConfig, deps: AppDeps): Homeserver {
  const { database, logger } = deps;
  if (config.plugins.length && !deps.plugins) {
    throw new ConfigError(
      "config.plugins lists plugins, but createApp was not given them: load them with setUpPlugins (or use openHomeserver)",
    );
  }
  if (config.redisUrl && !deps.redis) {
    throw new ConfigError(
      "config.redisUrl is set, but createApp was not given a Redis connection: connect with connectRedis (or use openHomeserver)",
    );
  }
  const { redis } = deps;
  for (const connection of redis ? [redis.client, redis.subscriber] : []) {
    // Only the error code: ioredis messages carry the Redis address.
    connection.on("error", (error: NodeJS.ErrnoException) =>
      logger.warn({ code: error.code ?? error.name }, "Redis connection error (reconnecting)"),
    );
  }
  const plugins = deps.plugins ?? PluginHost.empty();
  // Cluster-wide locks: background sweeps (one node per period) and the federation outbox (one node per destination).
  const locks = redis && new JobLocks(redis.client, redis.prefix);
  // The queue depth is read on scrape only, through the mailbox built just below.
  const metrics: Metrics = new Metrics(
    () => services.mailbox.queueDepth(),
    () => droppedLogLines(logger),
    () => database.writerStats(),
  );
  const services = createServices(config, database, {
    plugins,
    metrics,
    ...(redis && { rateLimitStore: { redis: redis.client, prefix: redis.prefix } }),
    ...(locks && {
      exclusive: (name: string, leaseMs: number, job: () => Promise<void>) => locks.runExclusive(name, leaseMs, job),
    }),
  });
  // Sealed-sender keys load (or are created) now: a key file readable by others stops start-up here.
  services.certificates.open();
  // So do the federation identity and signing keys, when federation is on.
  if (services.federation.enabled) services.federation.document.loadKeys();
  metrics.outboxPeers = () => services.federation.outbox.peers();
  // Public keys' fingerprints and a server name only: nothing secret.
  services.federation.peers.onPinMismatch = (mismatch) =>
    logger.warn(
      { peer: mismatch.server, pinned: mismatch.pinned, seen: mismatch.seen },
      "a pinned federation peer presented another identity key: its requests are refused and nothing is sent to it until the pin is updated",
    );
  // Sends a previous run left for other servers are relayed again.
  services.federation.start().catch((error: unknown) => logger.error({ err: error }, "federation outbox start failed"));
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  // Which proxies' X-Forwarded-For sets req.ip (the key of per-address rate limits).
  app.set("trust proxy", config.trustProxy);
  // The gateway first: the admin routes count its connections.
  const httpServer = createServer(app);
  const io = createGateway(httpServer, services, logger, {
    ...(redis && { redis }),
    // `--rate-limits off` (benchmarks: thousands of devices from one address) lifts the per-address caps too.
    connectionLimits: config.rateLimits
      ? config.connectionLimits
      : { ...config.connectionLimits, handshakesPerAddress: Infinity, sealedPerAddress: Infinity },
    clientAddress: clientAddressOf(app),
    refused: (reason) => metrics.refused(reason),
  });
  const timeSocketEvent = metrics.socketTimer(["send", "ack"]);
  io.on("connection", (socket) => {
    socket.use(timeSocketEvent);
    metrics.connectedDevices.inc();
    socket.once("disconnect", () => metrics.connectedDevices.dec());
  });
  app.use(metrics.httpTimer());
  if (config.metrics) {
    app.get(
      "/metrics",
      ...(config.metricsToken ? [bearerAuth(config.metricsToken, "zimchat-metrics")] : []),
      metrics.handler(),
    );
  }
  // Raw-body routes (attachments): their bodies stream to disk, never parsed.
  app.use(createAttachmentRouter(services.attachments, services.accounts, logger, services.federation));
  const storage = new StorageHealth(config.dataDir, database.provider === "sqlite", () =>
    logger.warn("storage is full: writes answer 507 storage_full and /readyz is not ready until space is freed"),
  );
  // No app-wide body parser: each route reads its own JSON body, after authentication, under its own limit.
  app.use(
    createRouter(createHandlers(config, database, services, storage), services.accounts, logger, {
      guards: createGuards(services),
      refusals: metrics,
      federation: services.federation,
    }),
  );
  app.use(createAdminRouter(config, database, services, io, logger, metrics));
  if (plugins.routes.length) app.use(createPluginRouter(plugins, services.accounts, logger, metrics));
  // A known path with a method it does not serve: 405 with Allow; an unknown path: 404.
  app.use(methodNotAllowed(servedRoutes(config, plugins)));
  app.use((_req, _res, next) => next(new HttpError("not_found", "No such route")));
  app.use(errorMiddleware(logger));

  // Background sweeps; with several nodes, one node per period runs each (a Redis lock).
  const jobs: [name: string, run: () => Promise<void>][] = [
    [
      "sweep:envelopes",
      async () => {
        const count = await services.mailbox.sweepExpired();
        if (count) logger.info({ count }, "expired envelopes deleted");
      },
    ],
    [
      "sweep:attachments",
      async () => {
        const { expired, orphans } = await services.attachments.sweep();
        if (expired || orphans) logger.info({ expired, orphans }, "expired attachments deleted");
      },
    ],
    [
      "sweep:federation-outbox",
      async () => {
        const count = await services.federation.outbox.sweep();
        if (count) logger.info({ count }, "queued sends to other servers expired");
      },
    ],
    [
      "sweep:link-codes",
      async () => {
        const count = await services.devices.sweepExpiredLinks();
        if (count) logger.debug({ count }, "expired linking codes deleted");
      },
    ],
  ];
  const sweep = setInterval(() => {
    for (const [name, run] of jobs) {
      const ran = locks ? locks.runOncePerPeriod(name, config.expirySweepMs, run) : run().then(() => true);
      ran.then(
        (done) => done && logger.debug({ job: name }, "background job ran"),
        (error: unknown) => logger.error({ err: error, job: name }, "background job failed"),
      );
    }
  }, config.expirySweepMs);
  sweep.unref();

  // A plugin (or anything) that blocks the loop cannot be interrupted: it is named afterwards.
  const stalls =
    config.eventLoopStallMs > 0
      ? watchEventLoop(config.eventLoopStallMs, (stallMs, since) => {
          const { culprit, suspects } = plugins.activity.blame(since, stallMs);
          metrics.eventLoopStalls.inc({ plugin: culprit?.plugin ?? "none", hook: culprit?.hook ?? "none" });
          if (culprit) {
            logger.warn(
              { plugin: culprit.plugin, hook: culprit.hook, stallMs, exact: culprit.exact },
              `event loop blocked for ${stallMs} ms by plugin "${culprit.plugin}" in ${culprit.hook}`,
            );
          } else {
            logger.warn({ stallMs, pluginsInFlight: suspects }, `event loop blocked for ${stallMs} ms`);
          }
        })
      : null;

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      clearInterval(sweep);
      stalls?.stop();
      storage.close();
      const stopped = new Promise<void>((resolve) => httpServer.close(() => resolve()));
      httpServer.closeIdleConnections();
      const grace = new Promise<void>((resolve) => setTimeout(resolve, config.shutdownGraceMs).unref());
      await Promise.race([services.mailbox.idle(), grace]);
      io.emit("closing", "shutdown");
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => io.close(() => resolve()));
      httpServer.closeAllConnections();
      await stopped;
      await plugins.stop();
      await services.federation.close();
      await database.close();
      await redis?.close();
    })());

  return { app, httpServer, io, services, metrics, database, logger, plugins, close };
}

/**
 * Loads the plugins listed in `config.plugins` (imports, checks, validates
 * their config) and runs their `setup` over the database's plugin storage.
 * They are not started yet. `loaded` skips the loading when it was done already.
 * @throws ConfigError for a module that cannot be loaded, is not a plugin, has a bad config or a duplicate name
 * @throws PluginError when a setup fails
 */
export async function setUpPlugins(
  config: ServerConfig,
  database: Database,
  logger: Logger,
  loaded?: readonly LoadedPlugin[],
): Promise<PluginHost> {
  const plugins = loaded ?? (await loadPlugins(config.plugins));
  if (!plugins.length) return PluginHost.empty();
  return PluginHost.setUp(plugins, {
    logger,
    serverName: config.serverName,
    dataDir: config.dataDir,
    hookTimeoutMs: config.pluginHookTimeoutMs,
    startTimeoutMs: config.pluginStartTimeoutMs,
    store: new PluginStore(database.prisma, database.provider),
  });
}

/**
 * Loads and checks the plugins, opens the database (applying migrations),
 * sets the plugins up, builds the homeserver and calls the plugins' `start`
 * hooks. Any failure closes what was opened and rejects: a bad plugin
 * config is a ConfigError, a failing setup or start a PluginError.
 */
export async function openHomeserver(
  config: ServerConfig,
  logger: Logger = createLogger(config.logLevel),
): Promise<Homeserver> {
  // Modules and configs first: a bad plugin config stops start-up before the database is touched.
  const loaded = config.plugins.length ? await loadPlugins(config.plugins) : [];
  // Redis next: an unreachable Redis stops start-up with a ConfigError naming REDIS_URL.
  const redis = config.redisUrl ? await connectRedis(config.redisUrl, config.redisPrefix) : undefined;
  let database: Database | undefined;
  let home: Homeserver | null = null;
  try {
    database = await openDatabase({
      databaseUrl: config.databaseUrl,
      sqliteSynchronous: config.sqliteSynchronous,
      sqliteCheckpointMs: config.sqliteCheckpointMs,
      sqliteWorker: config.sqliteWorker,
      onCheckpointError: (error) =>
        logger.warn({ err: error }, "SQLite WAL checkpoint failed (retried at the next interval)"),
    });
    const plugins = await setUpPlugins(config, database, logger, loaded);
    home = createApp(config, { database, logger, plugins, ...(redis && { redis }) });
    await plugins.start();
    return home;
  } catch (error) {
    if (home) await home.close();
    else {
      await database?.close();
      await redis?.close();
    }
    throw error;
  }
}
