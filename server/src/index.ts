/**
 * @zimchat/server: the ZimChat homeserver.
 * @packageDocumentation
 */

// Building and running
export { createApp, openHomeserver, type AppDeps, type Homeserver } from "./app.js";
export { ConfigError, defaultRateLimits, resolveConfig, type RateLimit, type RateLimits, type RegistrationMode, type ServerConfig, type SqliteSynchronous } from "./config.js";
export { createLogger, type Logger } from "./logger.js";

// Storage
export { openDatabase, type Database, type OpenDatabaseOptions } from "./db/database.js";
export { migrate, MigrationError } from "./db/migrate.js";
export { parseDatabaseUrl, type DatabaseTarget } from "./db/database-url.js";

// Services and the gateway
export type { Services } from "./services/index.js";
export type { DevicePrincipal } from "./services/account-service.js";
export { accountRoom, deviceRoom, liveRoom, type Gateway, type SocketData } from "./gateway/gateway.js";
export { HttpError } from "./errors.js";
