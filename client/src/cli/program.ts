import { Command, Option } from "commander";
import type { ChatOptions } from "./commands/chat.js";
import type { ReceiveOptions } from "./commands/receive.js";
import type { RegisterOptions } from "./commands/register.js";
import { count, seconds, withCommonOptions, type CommonOptions } from "./options.js";
import { chatHelp } from "./render.js";

// Each command's module (and with it libsignal, SQLite and Socket.IO) loads
// only when that command runs, so --help and usage errors answer at once.

/** The `zimchat-chat` command line. */
export function chatProgram(version: string): Command {
  const program = new Command()
    .name("zimchat-chat")
    .description("End-to-end encrypted ZimChat in your terminal. Each device lives in a profile directory (--profile, ZIMCHAT_PROFILE; default ./.zimchat-chat).")
    .version(version)
    .showHelpAfterError();

  // program.command() (not addCommand) so that subcommands inherit showHelpAfterError.
  const command = (name: string, description: string): Command => withCommonOptions(program.command(name).description(description));

  command("register", "create an account and this device on a homeserver (keys are generated here and never leave the profile)")
    .addOption(new Option("--server <url>", "the homeserver, like http://127.0.0.1:8080").env("ZIMCHAT_SERVER").makeOptionMandatory())
    .addOption(new Option("--username <name>", "your username: 3 to 32 of a-z, 0-9, _ and .").makeOptionMandatory())
    .addOption(new Option("--invite <token>", "an invite token, when the homeserver requires one").env("ZIMCHAT_INVITE"))
    .action(async (options: RegisterOptions) => (await import("./commands/register.js")).register(options));

  command("send", "send an end-to-end encrypted message (messages waiting for you are shown too)")
    .argument("<user>", "who to send to")
    .argument("<text...>", "the message (words are joined with spaces)")
    .action(async (user: string, words: string[], options: CommonOptions) => (await import("./commands/send.js")).send(user, words, options));

  command("receive", "connect, decrypt and show every message waiting for this device, then exit")
    .addOption(new Option("--wait <seconds>", "then stay connected this long for live messages (Ctrl-C stops early)").argParser(seconds).default(0))
    .action(async (options: ReceiveOptions) => (await import("./commands/receive.js")).receive(options));

  command("chat", `chat with a user: shows the conversation and live messages, sends each line you type (${chatHelp})`)
    .argument("<user>", "the other person")
    .addOption(new Option("--history <count>", "how many earlier messages to show").argParser(count).default(20))
    .action(async (user: string, options: ChatOptions) => (await import("./commands/chat.js")).chat(user, options));

  command("safety-number", "show the safety number with a user (60 digits and a QR code), to compare in person")
    .argument("<user>", "the other person")
    .action(async (user: string, options: CommonOptions) => (await import("./commands/safety-number.js")).showSafetyNumber(user, options));

  command("verify", "mark a user verified: give the safety number their screen shows (60 digits, spaces allowed) or the payload their QR code carries")
    .argument("<user>", "the other person")
    .argument("<number...>", "their safety number or scanned payload")
    .action(async (user: string, parts: string[], options: CommonOptions) => (await import("./commands/verify.js")).verify(user, parts, options));

  command("accept", "accept a user's changed safety number without comparing it: sending works again, the user is no longer verified")
    .argument("<user>", "the other person")
    .action(async (user: string, options: CommonOptions) => (await import("./commands/accept.js")).accept(user, options));

  command("whoami", "show this device's username, account id and homeserver")
    .action(async (options: CommonOptions) => (await import("./commands/whoami.js")).whoami(options));

  return program;
}
