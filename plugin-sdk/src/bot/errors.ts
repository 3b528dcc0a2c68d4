import { missingCase, type DisconnectReason } from "@zimchat/protocol";
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

/**
 * The bot's options cannot work (nothing to register with, another bot's directory, ...); the message says what to
 * change.
 */
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
    super(
      `a handler failed on a ${ctx.update.type} update: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}

/**
 * Registering `username` was refused because it is taken, and `dir` holds
 * no bot: what that means (a lost directory takes its keys with it) and how to recover.
 */
export function usernameTakenError(username: string, server: string, dir: string, cause: unknown): BotConfigError {
  return new BotConfigError(
    `The username ${username} is already registered on ${server}, and ${dir} holds no bot. ` +
      `If this was the bot's directory (deleted, emptied or replaced), its keys went with it: that account cannot be used from here again, ` +
      `and nothing sent to it can be decrypted. To recover: restore the directory from a backup; or register under another username (the username option); ` +
      `or ask the homeserver's operator to delete the old account, which frees the username: zimchat admin account delete ${username}.`,
    { cause },
  );
}

/** Why the homeserver closed a bot's connection for good, and what the bot does about it (it stops). */
export function closedConnectionReason(reason: Exclude<DisconnectReason, "shutdown">, dir: string): string {
  switch (reason) {
    case "displaced":
      return (
        `another connection of this device took over: this bot's directory (${dir}), or a copy of it, runs in another process. ` +
        "This one stops; run each bot directory in one process only (a copy's sessions and keys drift apart from the original's)."
      );
    case "removed":
      return "this device was unlinked from the bot's account. The bot stops; link or register it again to bring it back.";
    case "disabled":
      return "the homeserver's operator disabled the bot's account. The bot stops.";
    case "deleted":
      return "the homeserver's operator deleted the bot's account. The bot stops; its directory can no longer be used.";
    default:
      return missingCase(reason);
  }
}
