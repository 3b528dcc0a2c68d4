import { createServer, type Server as HttpServer } from "node:http";
import express, { type Express } from "express";
import { limits } from "@zimchat/protocol";
import { ConfigError, type ServerConfig } from "./config.js";
import { openDatabase, type Database } from "./db/database.js";
import { HttpError } from "./errors.js";
import { createGateway, type Gateway } from "./gateway/gateway.js";
import { createAttachmentRouter } from "./http/attachments.js";
import { createHandlers } from "./http/handlers.js";
import { createRouter, errorMiddleware } from "./http/router.js";
import { createLogger, type Logger } from "./logger.js";
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
    throw new ConfigError("config.plugins lists plugins, but createApp was not given them: load them with setUpPlugins (or use openHomeserver)");
  }
  const plugins = deps.plugins ?? PluginHost.empty();
  // The queue depth is read on scrape only, through the mailbox built just below.
  const metrics: Metrics = new Metrics(() => services.mailbox.queueDepth());
  const services = createServices(config, database, plugins, metrics);
  // Sealed-sender keys load (or are created) now: a key file readable by others stops start-up here.
  services.certificates.open();
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.use(metrics.httpTimer());
  if (config.metrics) app.get("/metrics", metrics.handler(config.metricsToken));
  // Raw-body routes (attachments) first: the JSON parser below would read their bodies.
  app.use(createAttachmentRouter(services.attachments, services.accounts, logger));
  app.use(express.json({ limit: limits.maxBodyBytes, strict: true, type: () => true }));
  app.use(createRouter(createHandlers(config, database, services), services.accounts, logger));
  if (plugins.routes.length) app.use(createPluginRouter(plugins, services.accounts, logger));
  app.use((_req, _res, next) => next(new HttpError("not_found", "No such route")));
  app.use(errorMiddleware(logger));

  const httpServer = createServer(app);
  const io = createGateway(httpServer, services, logger);
  const timeSocketEvent = metrics.socketTimer(["send", "ack"]);
  io.on("connection", (socket) => {
    socket.use(timeSocketEvent);
    metrics.connectedDevices.inc();
    socket.once("disconnect", () => metrics.connectedDevices.dec());
  });

  const sweep = setInterval(() => {
    services.mailbox.sweepExpired().then(
      (count) => count && logger.info({ count }, "expired envelopes deleted"),
      (error: unknown) => logger.error({ err: error }, "expiry sweep failed"),
    );
    services.attachments.sweep().then(
      ({ expired, orphans }) => (expired || orphans) && logger.info({ expired, orphans }, "expired attachments deleted"),
      (error: unknown) => logger.error({ err: error }, "attachment sweep failed"),
    );
    services.devices.sweepExpiredLinks().then(
      (count) => count && logger.debug({ count }, "expired linking codes deleted"),
      (error: unknown) => logger.error({ err: error }, "linking code sweep failed"),
    );
  }, config.expirySweepMs);
  sweep.unref();

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      clearInterval(sweep);
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
      await database.close();
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
export async function openHomeserver(config: ServerConfig, logger: Logger = createLogger(config.logLevel)): Promise<Homeserver> {
  // Modules and configs first: a bad plugin config stops start-up before the database is touched.
  const loaded = config.plugins.length ? await loadPlugins(config.plugins) : [];
  const database = await openDatabase({ databaseUrl: config.databaseUrl, sqliteSynchronous: config.sqliteSynchronous });
  let home: Homeserver | null = null;
  try {
    const plugins = await setUpPlugins(config, database, logger, loaded);
    home = createApp(config, { database, logger, plugins });
    await plugins.start();
    return home;
  } catch (error) {
    if (home) await home.close();
    else await database.close();
    throw error;
  }
}
