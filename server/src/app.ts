import { createServer, type Server as HttpServer } from "node:http";
import express, { type Express } from "express";
import { limits } from "@zimchat/protocol";
import type { ServerConfig } from "./config.js";
import { openDatabase, type Database } from "./db/database.js";
import { HttpError } from "./errors.js";
import { createGateway, type Gateway } from "./gateway/gateway.js";
import { createAttachmentRouter } from "./http/attachments.js";
import { createHandlers } from "./http/handlers.js";
import { createRouter, errorMiddleware } from "./http/router.js";
import { createLogger, type Logger } from "./logger.js";
import { createServices, type Services } from "./services/index.js";

/** What {@link createApp} needs besides the config. */
export interface AppDeps {
  database: Database;
  logger: Logger;
}

/** A homeserver, built but not listening. */
export interface Homeserver {
  app: Express;
  httpServer: HttpServer;
  io: Gateway;
  services: Services;
  database: Database;
  logger: Logger;
  /**
   * Graceful shutdown: stop accepting connections and requests, let
   * in-flight commits finish, tell sockets why and close them, close the
   * database.
   */
  close(): Promise<void>;
}

/**
 * Builds the Express app and the Socket.IO gateway on one HTTP server,
 * without listening, so tests drive the real app (Supertest, socket.io-client).
 */
export function createApp(config: ServerConfig, deps: AppDeps): Homeserver {
  const { database, logger } = deps;
  const services = createServices(config, database);
  // Sealed-sender keys load (or are created) now: a key file readable by others stops start-up here.
  services.certificates.open();
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  // Raw-body routes (attachments) first: the JSON parser below would read their bodies.
  app.use(createAttachmentRouter(services.attachments, services.accounts, logger));
  app.use(express.json({ limit: limits.maxBodyBytes, strict: true, type: () => true }));
  app.use(createRouter(createHandlers(config, database, services), services.accounts, logger));
  app.use((_req, _res, next) => next(new HttpError("not_found", "No such route")));
  app.use(errorMiddleware(logger));

  const httpServer = createServer(app);
  const io = createGateway(httpServer, services, logger);

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
      await database.close();
    })());

  return { app, httpServer, io, services, database, logger, close };
}

/** Opens the database (applying migrations) and builds the homeserver. */
export async function openHomeserver(config: ServerConfig, logger: Logger = createLogger(config.logLevel)): Promise<Homeserver> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, sqliteSynchronous: config.sqliteSynchronous });
  return createApp(config, { database, logger });
}
