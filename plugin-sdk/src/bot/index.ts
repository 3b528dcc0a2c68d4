/**
 * @zimchat/plugin-sdk/bot: end-to-end encrypted ZimChat bots. A bot is a
 * device of its own account (`@zimchat/client`), keeps its protocol store on
 * disk and decrypts on its own machine; routing follows grammY.
 * @packageDocumentation
 */

// The bot
export { Bot, type BotOptions, type ErrorHandler } from "./bot.js";
export { BotConfigError, BotError, BotStoreError, type BotRegistration, type BotStoreProblem } from "./errors.js";
export { markerFileName, storeFileName } from "./registration.js";
export { BotLockedError, lockFileName, type StoreLockHolder } from "./store-lock.js";

// Routing
export {
  Composer,
  compose,
  parseCommand,
  type CommandInfo,
  type Middleware,
  type MiddlewareFn,
  type MiddlewareObj,
  type NextFunction,
} from "./composer.js";
export {
  Context,
  matchesFilter,
  type BotUpdate,
  type Chat,
  type CommandContext,
  type DecryptionFailure,
  type Filtered,
  type HearsContext,
  type IdentityChange,
  type IncomingMessage,
  type UpdateFilter,
} from "./context.js";

// Sessions
export {
  MemorySessionStorage,
  Sessions,
  session,
  type SessionFlavor,
  type SessionOptions,
  type StorageAdapter,
} from "./session.js";
export { SqliteSessionStorage } from "./sqlite-session-storage.js";

// Trust and logging
export type { BotTrust, IdentityChangePolicy } from "./trust.js";
export { MemoryLogger, consoleLogger, silentLogger, type BotLogger, type LogLine } from "./logger.js";
