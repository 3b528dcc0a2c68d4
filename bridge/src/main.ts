#!/usr/bin/env node
/**
 * Runs a bridge: `zimchat-bridge irc --config <file>` or `zimchat-bridge xmpp --config <file>`
 * (`npm run bridge -- irc --config <file>` from the repository).
 */
import { Command } from "commander";
import { BotConfigError, BotLockedError, BotStoreError } from "@zimchat/plugin-sdk/bot";
import { BridgeConfigFileError, loadBridgeConfig, secretEnv } from "./config.js";
import { createBridge } from "./create.js";
import type { NetworkName } from "./network.js";
import { BridgeStoreMissingError } from "./store.js";

async function run(network: NetworkName, options: { config: string }): Promise<void> {
  let bridge;
  try {
    bridge = createBridge(loadBridgeConfig(options.config, network));
    bridge.bot.onDisplaced(() => {
      console.error(
        "Stopped: another process connected as this bridge's device (the same directory, or a copy of it, runs elsewhere). Run each bridge directory in one process only.",
      );
      process.exit(1);
    });
    await bridge.start();
  } catch (error) {
    if (
      error instanceof BridgeConfigFileError ||
      error instanceof BridgeStoreMissingError ||
      error instanceof BotStoreError ||
      error instanceof BotConfigError ||
      error instanceof BotLockedError
    ) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}

const program = new Command("zimchat-bridge")
  .description(
    "Bridge ZimChat groups to IRC channels or XMPP rooms. The bridge is a bot device: it decrypts the groups it " +
      "bridges and relays them in plaintext, only in groups whose admin approved it (/bridge in the chat), which " +
      "every member's client shows. SIGINT/SIGTERM stop it cleanly.",
  )
  .addHelpText(
    "after",
    `\nSecrets may come from the environment instead of the file:\n` +
      `  ${secretEnv.invite}  the invite token (first run)\n` +
      `  ${secretEnv.ircSaslPassword}  the IRC SASL password\n` +
      `  ${secretEnv.xmppSecret}  the XMPP component secret\n` +
      `\nThe config file format: docs/bridges.md.`,
  );
for (const network of ["irc", "xmpp"] as const) {
  program
    .command(network)
    .description(
      network === "irc"
        ? "bridge to IRC: a relay nick, optional per-member puppets, flood pacing, reconnects"
        : "bridge to XMPP rooms as an XEP-0114 component, members as room occupants",
    )
    .requiredOption("--config <file>", "the bridge's config file (YAML, or JSON when it ends in .json)")
    .action((options: { config: string }) => run(network, options));
}
await program.parseAsync();
