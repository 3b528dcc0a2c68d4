/**
 * @zimchat/server: the ZimChat homeserver.
 * @packageDocumentation
 */

// Building and running
export { createApp, openHomeserver, setUpPlugins, type AppDeps, type Homeserver } from "./app.js";
export {
  ConfigError,
  defaultRateLimits,
  resolveConfig,
  type PluginSpec,
  type RateLimit,
  type RateLimits,
  type RegistrationMode,
  type ServerConfig,
  type SqliteSynchronous,
} from "./config.js";
export { createLogger, type Logger } from "./logger.js";

// Several nodes
export { connectRedis, JobLocks, type ClusterRedis } from "./cluster/redis.js";

// Storage
export { openDatabase, type Database, type OpenDatabaseOptions } from "./db/database.js";
export { migrate, MigrationError } from "./db/migrate.js";
export { parseDatabaseUrl, type DatabaseTarget } from "./db/database-url.js";

// Server plugins
export { loadPlugins, type LoadedPlugin } from "./plugins/load-plugins.js";
export {
  PluginHost,
  vetoFailure,
  type MountedRoute,
  type ObserverHook,
  type ObserverHookPayloads,
  type PluginHostOptions,
  type VetoHook,
  type VetoHookPayloads,
} from "./plugins/plugin-host.js";
export { PluginError, PluginTimeoutError, type PluginFailurePoint } from "./plugins/plugin-error.js";
export { PluginStorageError, PluginStore } from "./stores/plugin-store.js";

// Services and the gateway
export type { Services } from "./services/index.js";
export type { DevicePrincipal } from "./services/account-service.js";
export { accountRoom, deviceRoom, liveRoom, type Gateway, type SocketData } from "./gateway/gateway.js";
export { HttpError } from "./errors.js";
