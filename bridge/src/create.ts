/** Builds a bridge (bot, adapter, core) from a loaded config. */
import { Bot } from "@zimchat/plugin-sdk/bot";
import { Bridge, bridgeDescription } from "./bridge.js";
import type { LoadedConfig } from "./config.js";
import { createIrcAdapter } from "./irc/adapter.js";
import { createXmppAdapter } from "./xmpp/adapter.js";
import type { BotLogger } from "@zimchat/plugin-sdk/bot";
import type { NetworkAdapter } from "./network.js";

/** Options beyond the config file (tests: a logger to read; apps: signal handling). */
export interface CreateBridgeOptions {
  logger?: BotLogger;
  /** Stop on SIGINT/SIGTERM and exit (see `BotOptions.handleSignals`). @default true */
  handleSignals?: boolean;
}

export function createBridge(config: LoadedConfig, options: CreateBridgeOptions = {}): Bridge {
  const z = config.zimchat;
  const bot = new Bot({
    dir: z.dir,
    ...(z.server ? { server: z.server } : {}),
    ...(z.username ? { username: z.username } : {}),
    ...(z.inviteToken ? { inviteToken: z.inviteToken } : {}),
    ...(z.trustRootFingerprint ? { trustRootFingerprint: z.trustRootFingerprint } : {}),
    ...(z.allowInsecureHttp ? { allowInsecureHttp: true } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.handleSignals === false ? { handleSignals: false } : {}),
    description: bridgeDescription(config.network),
  });
  const adapter: NetworkAdapter =
    config.network === "irc" ? createIrcAdapter(config.irc, bot.logger) : createXmppAdapter(config.xmpp, bot.logger);
  return new Bridge({ bot, adapter, ...(config.files ? { files: config.files } : {}) });
}
