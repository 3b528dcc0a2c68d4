import { Command, Option } from "commander";
import type { ChatOptions } from "./commands/chat.js";
import type { DownloadOptions } from "./commands/download.js";
import type { LinkOptions } from "./commands/link.js";
import type { ReceiveOptions } from "./commands/receive.js";
import type { RegisterOptions } from "./commands/register.js";
import type { SendFileOptions } from "./commands/send-file.js";
import type { WebOptions } from "./commands/web.js";
import { count, deviceId, listenHost, port, seconds, withCommonOptions, type CommonOptions } from "./options.js";
import { profilesHome } from "./profile-path.js";
import { chatHelp, groupChatHelp } from "./render.js";

// Each command's module (and with it libsignal, SQLite and Socket.IO) loads
// only when that command runs, so --help and usage errors answer at once.

/** The `zimchat-chat` command line. */
export function chatProgram(version: string, env: { XDG_DATA_HOME?: string | undefined } = {}): Command {
  const program = new Command()
    .name("zimchat-chat")
    .description(
      `End-to-end encrypted ZimChat in your terminal. Each device lives in a profile (--profile, ZIMCHAT_PROFILE): a name, kept in ${profilesHome(env)}/<name> ` +
        `($XDG_DATA_HOME/zimchat/profiles; "default" unless named), or a directory path (any value with a /). ` +
        `Users of your homeserver are named by username (bob); users of another homeserver as name@server (bob@news.example), when your homeserver federates. ` +
        `Set NO_COLOR for output without colours.`,
    )
    .version(version)
    .showHelpAfterError();

  // program.command() (not addCommand) so that subcommands inherit showHelpAfterError.
  const command = (name: string, description: string, parent: Command = program): Command =>
    withCommonOptions(parent.command(name).description(description), env);
  const user = "a username, or name@server for a user of another homeserver (bob@news.example)";
  const target =
    "a username (name@server for a user of another homeserver), or a group: group:<id-or-title> (a group id, or a title that is not a username, also works without group:)";

  command(
    "register",
    "create an account and this device on a homeserver (keys are generated here and never leave the profile)",
  )
    .addOption(
      new Option("--server <url>", "the homeserver, like http://127.0.0.1:8080")
        .env("ZIMCHAT_SERVER")
        .makeOptionMandatory(),
    )
    .addOption(new Option("--username <name>", "your username: 3 to 32 of a-z, 0-9, _ and .").makeOptionMandatory())
    .addOption(
      new Option("--invite <token>", "an invite token, when the homeserver requires one").env("ZIMCHAT_INVITE"),
    )
    .addOption(
      new Option(
        "--allow-insecure-http",
        "allow a plain http:// homeserver that is not on this machine (passwords and metadata cross the network unencrypted)",
      ).default(false),
    )
    .action(async (options: RegisterOptions) => (await import("./commands/register.js")).register(options));

  command("send", "send an end-to-end encrypted message (messages waiting for you are shown too)")
    .argument("<user>", `who to send to: ${user}`)
    .argument("<text...>", "the message (words are joined with spaces)")
    .action(async (user: string, words: string[], options: CommonOptions) =>
      (await import("./commands/send.js")).send(user, words, options),
    );

  command("receive", "connect, decrypt and show every message waiting for this device, then exit")
    .addOption(
      new Option("--wait <seconds>", "then stay connected this long for live messages (Ctrl-C stops early)")
        .argParser(seconds)
        .default(0),
    )
    .action(async (options: ReceiveOptions) => (await import("./commands/receive.js")).receive(options));

  command(
    "chat",
    `chat with a user or in a group: shows the conversation and live messages, sends each line you type (${chatHelp}; ${groupChatHelp})`,
  )
    .argument("<user-or-group>", target)
    .addOption(new Option("--history <count>", "how many earlier messages to show").argParser(count).default(20))
    .addHelpText(
      "after",
      '\nExamples:\n  zimchat-chat chat bob\n  zimchat-chat chat bob@news.example   (a user of another homeserver)\n  zimchat-chat chat "group:Braai crew"' +
        "\nA bridged group (a bot relays it in plaintext to IRC or XMPP) shows a disclosure line when it opens and whenever its bridges change.",
    )
    .action(async (user: string, options: ChatOptions) => (await import("./commands/chat.js")).chat(user, options));

  command("send-file", "send a file, end-to-end encrypted (the homeserver stores only padded ciphertext)")
    .argument("<user-or-group>", target)
    .argument("<path>", "the file")
    .addOption(new Option("--caption <text>", "a message sent with the file"))
    .action(async (to: string, path: string, options: SendFileOptions) =>
      (await import("./commands/send-file.js")).sendFile(to, path, options),
    );

  command(
    "download",
    "save a file someone sent you, from this server or another (receive and chat show each file's message id); its digest is checked before it is decrypted",
  )
    .argument("<messageId>", "the id of the message the file came with")
    .addOption(
      new Option(
        "--out <path>",
        "where to save it: a file, or a directory (default: the sender's file name in the current directory, never replacing a file)",
      ),
    )
    .action(async (messageId: string, options: DownloadOptions) =>
      (await import("./commands/download.js")).download(messageId, options),
    );

  const group = program
    .command("group")
    .description(
      "groups: create, add, remove, list, send, bridge, unbridge (groups live on the members' devices; the homeserver knows nothing of them)",
    )
    .addHelpText(
      "after",
      "\nA group is named by its id or by its title (quote titles with spaces); chat in one with zimchat-chat chat group:<id-or-title>." +
        "\nMembers may be users of other homeservers (name@server) when your homeserver federates:\n  zimchat-chat group create Braai bob carol@news.example",
    );
  command("create", "create a group with you as its admin", group)
    .argument("<title>", "the group's title")
    .argument("<members...>", "usernames of the other members (name@server for a user of another homeserver)")
    .action(async (title: string, users: string[], options: CommonOptions) =>
      (await import("./commands/group.js")).createGroup(title, users, options),
    );
  command("add", "add members to a group (admins only)", group)
    .argument("<group>", "the group's id or title")
    .argument("<users...>", "usernames to add (name@server for a user of another homeserver)")
    .action(async (name: string, users: string[], options: CommonOptions) =>
      (await import("./commands/group.js")).changeGroup("added", name, users, options),
    );
  command("remove", "remove members from a group (admins only); they cannot read anything sent afterwards", group)
    .argument("<group>", "the group's id or title")
    .argument("<users...>", "usernames to remove")
    .action(async (name: string, users: string[], options: CommonOptions) =>
      (await import("./commands/group.js")).changeGroup("removed", name, users, options),
    );
  command("leave", "leave a group: you no longer receive its messages (the only admin cannot leave)", group)
    .argument("<group>", "the group's id or title")
    .action(async (name: string, options: CommonOptions) => (await import("./commands/group.js")).leave(name, options));
  command("list", "list the groups this device knows, with their members", group).action(
    async (options: CommonOptions) => (await import("./commands/group.js")).listGroups(options),
  );
  command("send", "send a message to a group (one upload, fanned out by the homeserver to every member device)", group)
    .argument("<group>", "the group's id or title")
    .argument("<text...>", "the message (words are joined with spaces)")
    .action(async (name: string, words: string[], options: CommonOptions) =>
      (await import("./commands/group.js")).groupSend(name, words, options),
    );

  command(
    "bridge",
    "bridge a group through a bot (admins only): the bot joins, decrypts the group's messages and relays them in plaintext to an IRC channel or XMPP room; every member sees a disclosure line",
    group,
  )
    .argument("<group>", "the group's id or title")
    .argument("<bot>", "the bridge bot's username (name@server for a bot of another homeserver)")
    .argument("<network>", "irc or xmpp")
    .argument("<target>", "where it relays to: an IRC channel (quote it: '#club'), an XMPP room (club@rooms.example)")
    .addOption(new Option("--attachments", "relay files too, not only text").default(false))
    .addHelpText(
      "after",
      "\nExample:\n  zimchat-chat group bridge \"Braai crew\" ircbridge irc '#braai'\n" +
        "Every member then sees:\n  Bridged: messages in this group are decrypted by ircbridge and sent in plaintext to IRC #braai. Attachments are not bridged.",
    )
    .action(
      async (
        name: string,
        bot: string,
        network: string,
        target: string,
        options: CommonOptions & { attachments: boolean },
      ) => (await import("./commands/group.js")).groupBridge(name, bot, network, target, options),
    );
  command(
    "unbridge",
    "remove a group's bridge (admins only): the bot is removed from the group and cannot read anything sent afterwards",
    group,
  )
    .argument("<group>", "the group's id or title")
    .argument("<bot>", "the bridge bot's username")
    .action(async (name: string, bot: string, options: CommonOptions) =>
      (await import("./commands/group.js")).groupUnbridge(name, bot, options),
    );

  command("safety-number", "show the safety number with a user (60 digits and a QR code), to compare in person")
    .argument("<user>", `the other person: ${user}`)
    .action(async (user: string, options: CommonOptions) =>
      (await import("./commands/safety-number.js")).showSafetyNumber(user, options),
    );

  command(
    "verify",
    "mark a user verified: give the safety number their screen shows (60 digits, spaces allowed) or the payload their QR code carries",
  )
    .argument("<user>", `the other person: ${user}`)
    .argument("<number...>", "their safety number or scanned payload")
    .action(async (user: string, parts: string[], options: CommonOptions) =>
      (await import("./commands/verify.js")).verify(user, parts, options),
    );

  command(
    "accept",
    "accept a user's changed safety number without comparing it: sending works again, the user is no longer verified",
  )
    .argument("<user>", `the other person: ${user}`)
    .action(async (user: string, options: CommonOptions) =>
      (await import("./commands/accept.js")).accept(user, options),
    );

  command(
    "link",
    "make this new profile another device of your account: shows a link code (text and QR) to approve on your primary device, then waits",
  )
    .addOption(
      new Option("--server <url>", "your account's homeserver, like http://127.0.0.1:8080")
        .env("ZIMCHAT_SERVER")
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        "--allow-insecure-http",
        "allow a plain http:// homeserver that is not on this machine (passwords and metadata cross the network unencrypted)",
      ).default(false),
    )
    .addHelpText(
      "after",
      "\nOn the primary device (device 1), run: zimchat-chat approve-link '<the zimchat-link:?… URI>'",
    )
    .action(async (options: LinkOptions) => (await import("./commands/link.js")).link(options));

  command(
    "approve-link",
    "on your primary device: approve a new device that zimchat-chat link shows (it receives your account's identity key, sealed to it)",
  )
    .argument("<uri>", "the zimchat-link:?… URI the new device shows (in quotes)")
    .action(async (uri: string, options: CommonOptions) =>
      (await import("./commands/link.js")).approveLink(uri, options),
    );

  command("devices", "list your account's devices, with the day each was created and last seen").action(
    async (options: CommonOptions) => (await import("./commands/devices.js")).devices(options),
  );

  command("unlink", "remove a device from your account (from the primary device, or a device removing itself)")
    .argument("<deviceId>", "the device's id (zimchat-chat devices lists them)", deviceId)
    .action(async (id: number, options: CommonOptions) => (await import("./commands/devices.js")).unlink(id, options));

  command(
    "web",
    "serve the web client to your own browser: a local daemon keeps this profile's keys and prints a link, http://127.0.0.1:<port>/#token=…, to open on this machine",
  )
    .addOption(
      new Option(
        "--host <address>",
        "the address to listen on: only 127.0.0.1 (or localhost) is accepted; any other (0.0.0.0, a LAN address) is refused, as the daemon holds your private keys",
      )
        .argParser(listenHost)
        .default("127.0.0.1"),
    )
    .addOption(
      new Option("--port <port>", "the port to listen on (0: a free one, chosen at random)")
        .argParser(port)
        .default(0, "random"),
    )
    .addOption(new Option("--open", "also open the link in your default browser").default(false))
    .addOption(
      new Option(
        "--allow-insecure-http",
        "allow registering (on the page) on a plain http:// homeserver that is not on this machine",
      ).default(false),
    )
    .addHelpText(
      "after",
      "\nExamples:\n  zimchat-chat web --profile alice\n  zimchat-chat web --profile alice --open --port 8765\n" +
        "\nThe link's #token=… is a fresh random secret for this run: the page trades it for a cookie (HttpOnly, SameSite=Strict). " +
        "The daemon answers only requests addressed to 127.0.0.1:<port> or localhost:<port> (Host header) from its own pages (Origin), " +
        "with a Content-Security-Policy of default-src 'self' and no CORS; keys never leave this process. " +
        "Messages typed while the homeserver is unreachable are kept in the profile (as in chat) and sent when it answers again. " +
        "With no device in the profile, the page registers one. Ctrl-C stops the daemon.",
    )
    .action(async (options: WebOptions) => (await import("./commands/web.js")).web(options));

  command("whoami", "show this device's username, account id and homeserver").action(async (options: CommonOptions) =>
    (await import("./commands/whoami.js")).whoami(options),
  );

  return program;
}
