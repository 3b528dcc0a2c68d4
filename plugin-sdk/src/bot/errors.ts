import type { Context } from "./context.js";

/** Why a registered bot's protocol store cannot be used. */
export type BotStoreProblem = "missing" | "unreadable" | "empty" | "other_account";

/** What `bot.json` records about a registered bot (no secrets: the keys stay in the store). */
export interface BotRegistration {
  /** The account id (UUID). */
  uuid: string;
  username: string;
  deviceId: number;
  /** The homeserver's URL. */
  server: string;
  /** When the device was registered or linked (ms since the epoch). */
  registeredAt: number;
}

const problems: Record<BotStoreProblem, string> = {
  missing: "is missing",
  unreadable: "cannot be opened",
  empty: "holds no registered device",
  other_account: "holds a different account's device",
};

/**
 * The bot is registered (its `bot.json` says so) but its protocol store is
 * missing, unreadable, empty, or another account's. The bot refuses to
 * start: without its store it cannot decrypt anything sent to it, and
 * registering again silently would change its identity under its users.
 *
 * The message (documented in docs/bot-guide.md) reads:
 *
 * `Bot "<username>" (account <uuid>, device <n> on <server>) is registered
 * in <dir>, but its protocol store <dir>/device.db <problem>, so it cannot
 * decrypt. It will not register again by itself. To recover: restore
 * device.db from a backup; or re-link the bot as a new device from its
 * account's primary device (start it in a new directory with the link
 * option, --link, and approve the link there); or re-register it under a new
 * username in a new directory (its users will see a new safety number).`
 */
export class BotStoreError extends Error {
  override name = "BotStoreError";

  constructor(
    readonly problem: BotStoreProblem,
    readonly dir: string,
    readonly storePath: string,
    readonly registration: BotRegistration,
    options?: { cause?: unknown },
  ) {
    const r = registration;
    super(
      `Bot "${r.username}" (account ${r.uuid}, device ${r.deviceId} on ${r.server}) is registered in ${dir}, ` +
        `but its protocol store ${storePath} ${problems[problem]}, so it cannot decrypt. It will not register again by itself. ` +
        `To recover: restore device.db from a backup; ` +
        `or re-link the bot as a new device from its account's primary device (start it in a new directory with the link option, --link, and approve the link there); ` +
        `or re-register it under a new username in a new directory (its users will see a new safety number).`,
      options,
    );
  }
}

/** The bot's options cannot work (nothing to register with, another bot's directory, ...); the message says what to change. */
export class BotConfigError extends Error {
  override name = "BotConfigError";
}

/** A handler (or middleware) threw: the error, and the context it was handling (grammY's `BotError`). */
export class BotError<C extends Context = Context> extends Error {
  override name = "BotError";

  constructor(
    readonly error: unknown,
    readonly ctx: C,
  ) {
    super(`a handler failed on a ${ctx.update.type} update: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
