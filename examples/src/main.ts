/**
 * Runs an example bot: `npm run example -- <bot> --server <url> --invite <token> --dir <dir>`.
 * The first run registers the bot; later runs need only `--dir`.
 */
import { Command, Option } from "commander";
import { BotConfigError, BotLockedError, BotStoreError, type BotOptions } from "@zimchat/plugin-sdk/bot";
import { createEchoBot } from "./echo-bot.js";
import { createReminderBot } from "./reminder-bot.js";
import { createVerifyBot } from "./verify-bot.js";

/** What running a bot needs of it. */
interface Runnable {
  start(): Promise<void>;
  stop(): Promise<void>;
  onDisplaced(hook: () => unknown): unknown;
}

const bots: [name: string, description: string, create: (options: BotOptions) => Runnable][] = [
  ["echo-bot", "replies to every message with the same message", createEchoBot],
  ["reminder-bot", "/remind 10m tea, kept across restarts", createReminderBot],
  ["verify-bot", "shows safety numbers and walks users through verification", createVerifyBot],
];

interface CliOptions {
  dir?: string;
  server?: string;
  username?: string;
  invite?: string;
  link?: boolean;
  allowInsecureHttp?: boolean;
}

/**
 * Starts the bot. SIGINT and SIGTERM stop it cleanly and exit 0 (the bot
 * handles them); a refused start, or being displaced by another process
 * running the same bot directory, exits 1 with the reason on stderr.
 */
async function run(bot: Runnable): Promise<void> {
  bot.onDisplaced(() => {
    console.error(
      "Stopped: another process connected as this bot's device (the same --dir, or a copy of it, runs elsewhere). Run each bot directory in one process only.",
    );
    process.exit(1);
  });
  try {
    await bot.start();
  } catch (error) {
    if (!(error instanceof BotStoreError || error instanceof BotConfigError || error instanceof BotLockedError))
      throw error;
    console.error(error.message);
    process.exit(1);
  }
}

const program = new Command("example").description("Run a ZimChat example bot (Ctrl-C stops it)");
for (const [name, description, create] of bots) {
  program
    .command(name)
    .description(description)
    .option("--dir <dir>", "the bot's directory: its keys (device.db), bot.json, sessions", `./${name}-data`)
    .option("--server <url>", "the homeserver's URL (first run)")
    .option("--username <name>", "the bot's username (first run; default: the bot's name without the dash)")
    .addOption(
      new Option("--invite <token>", "an invite token (first run, if the homeserver registers by invite)").env(
        "ZIMCHAT_INVITE",
      ),
    )
    .option(
      "--link",
      "link as a new device of an existing account instead of registering (approve it on that account's primary device)",
    )
    .option("--allow-insecure-http", "allow a plain http:// homeserver that is not on this machine (first run)")
    .action(async (options: CliOptions) => {
      await run(
        create({
          dir: options.dir ?? `./${name}-data`,
          ...(options.server ? { server: options.server } : {}),
          ...(options.username ? { username: options.username } : {}),
          ...(options.invite ? { inviteToken: options.invite } : {}),
          ...(options.link ? { link: true } : {}),
          ...(options.allowInsecureHttp ? { allowInsecureHttp: true } : {}),
        }),
      );
    });
}
await program.parseAsync();
