import { clearLine, createInterface, cursorTo, moveCursor } from "node:readline";
import { LineOutbox } from "../chat-outbox.js";
import { toCliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import type { Output } from "../output.js";
import { chatHelp, groupChatHelp } from "../render.js";
import { runCommand } from "../run.js";
import { attachmentSummary, groupRef, withSession, type Session } from "../session.js";
import { bridgeIn, sendToGroup, unbridgeIn } from "./group.js";
import { safetyNumberEvent } from "./safety-number.js";
import { sendFileTo } from "./send-file.js";

/** `zimchat-chat chat` options. */
export interface ChatOptions extends CommonOptions {
  /** How many stored messages to show first. @default 20 */
  history: number;
}

/**
 * Reads typed lines one at a time (a line's work finishes before the next
 * starts) until /quit, Ctrl-C or the end of input.
 */
function readLines(output: Output, handle: (line: string) => Promise<"quit" | void>): Promise<void> {
  const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY) && !output.json;
  const rl = createInterface({
    input: process.stdin,
    ...(tty ? { output: process.stdout, prompt: "> " } : {}),
    terminal: tty,
  });
  if (tty) {
    // Incoming lines go above the prompt, which is drawn again below them.
    output.hooks = {
      before: () => {
        clearLine(process.stdout, 0);
        cursorTo(process.stdout, 0);
      },
      after: () => rl.prompt(true),
    };
    rl.prompt();
  }
  let quit = false;
  let pending = Promise.resolve();
  const stop = (): void => {
    if (tty) process.stdout.write("\n"); // leave the prompt line
    rl.close();
  };
  process.once("SIGINT", stop);
  rl.on("SIGINT", stop);
  rl.on("line", (line) => {
    pending = pending.then(async () => {
      if (quit) return;
      if (tty) {
        // Replace the typed line with the sent message as the conversation shows it.
        moveCursor(process.stdout, 0, -1);
        clearLine(process.stdout, 0);
      }
      if ((await handle(line)) === "quit") {
        quit = true;
        rl.close();
      } else if (tty) rl.prompt();
    });
  });
  return new Promise((resolve) => {
    // At the end of input, lines already read are still sent.
    rl.once("close", () => {
      process.off("SIGINT", stop);
      void pending.then(() => {
        output.hooks = null;
        resolve();
      });
    });
  });
}

async function chatWith(session: Session, to: string, history: number): Promise<void> {
  const { client, output, profile } = session;
  const target = await session.resolveTarget(to);
  const conversation = target.kind === "group" ? `group:${target.group.id}` : target.uuid;
  const group = target.kind === "group" ? groupRef(target.group) : undefined;
  const name = target.kind === "group" ? target.group.title : target.name;
  for (const m of await client.conversation(conversation, history)) {
    if (m.attachment && m.direction === "in") profile.attachments.remember(m.id, conversation);
    const author = m.author && target.kind === "group" ? session.nameOf(m.author) : name;
    output.emit({
      type: "history",
      direction: m.direction,
      user: author,
      text: m.text,
      timestamp: m.timestamp,
      ...(group ? { group } : {}),
      ...(m.attachment ? { id: m.id, attachment: attachmentSummary(m.attachment) } : {}),
    });
  }
  await session.connectToSend();
  // A bridged group says so each time it is opened (with the state as connecting left it).
  if (target.kind === "group") session.showBridges(client.group(target.group.id) ?? target.group);
  output.emit({ type: "chatReady", user: name, ...(group ? { group } : {}) });
  const context = { server: client.local.serverUrl, nameOf: session.nameOf };
  const refused = (error: unknown): void => {
    const failure = toCliError(error, context);
    output.emit({ type: "error", code: failure.code, message: failure.message });
  };
  // Lines typed while the homeserver is unreachable wait here (and in the profile) until it answers again.
  const outbox = new LineOutbox({
    pending: profile.outbox.pending(conversation),
    persist: (lines) => profile.outbox.set(conversation, lines),
    send: async (text, queued) => {
      if (target.kind === "group") return sendToGroup(session, target.group.id, text, queued);
      const sent = await client.sendText(target.uuid, text);
      output.emit({
        type: "sent",
        to: target.name,
        toUuid: target.uuid,
        text,
        timestamp: sent.timestamp,
        devices: sent.envelopes.length,
        ...(sent.queued ? { heldByHomeserver: true as const } : {}),
        ...(queued ? { queued: true as const } : {}),
      });
    },
    queued: (text, pending, error) =>
      output.emit({
        type: "queued",
        to: name,
        ...(group ? { group } : {}),
        text,
        pending,
        reason: toCliError(error, context).message,
      }),
    failed: (_text, error) => refused(error),
  });
  if (outbox.size)
    output.emit({
      type: "warning",
      message: `sending ${outbox.size} line(s) to ${name} queued by an earlier chat while the homeserver was unreachable`,
    });
  await outbox.resume();
  await readLines(output, async (line): Promise<"quit" | void> => {
    const command = line.trim();
    if (command === "/quit") return "quit";
    try {
      if (!command) return undefined;
      if (command === "/safety") {
        if (target.kind === "group")
          return output.emit({
            type: "warning",
            message: "/safety compares safety numbers with one person: run zimchat-chat safety-number <user>",
          });
        return output.emit(await safetyNumberEvent(session, target.name));
      }
      if (command === "/file" || command.startsWith("/file ")) {
        const path = command.slice("/file".length).trim();
        if (!path) return output.emit({ type: "warning", message: "/file needs a path: /file <path>" });
        // The group as it is now: members may have changed since the chat began.
        const current =
          target.kind === "group"
            ? { kind: "group" as const, group: client.group(target.group.id) ?? target.group }
            : target;
        return await sendFileTo(session, current, path, "");
      }
      const [word = "", ...args] = command.split(/\s+/);
      if (word === "/bridge" || word === "/unbridge") {
        if (target.kind !== "group")
          return output.emit({ type: "warning", message: `${word} works in a group chat: ${groupChatHelp}` });
        if (word === "/unbridge") {
          if (args.length !== 1)
            return output.emit({ type: "warning", message: "/unbridge needs a bot: /unbridge <bot>" });
          return await unbridgeIn(session, target.group.id, args[0]!);
        }
        const attachments = args.includes("--attachments");
        const [bot, network, bridgeTarget, ...rest] = args.filter((a) => a !== "--attachments");
        if (!bot || !network || !bridgeTarget || rest.length)
          return output.emit({
            type: "warning",
            message: "/bridge needs a bot, a network and a target: /bridge <bot> <irc|xmpp> <target> [--attachments]",
          });
        return await bridgeIn(session, target.group.id, bot, network, bridgeTarget, attachments);
      }
      if (command.startsWith("/") && !command.startsWith("//"))
        return output.emit({ type: "warning", message: `unknown command ${command}: ${chatHelp}` });
      // "//remind 10m tea" sends "/remind 10m tea": commands for bots, without a typo of ours ever reaching a friend.
      const text = command.startsWith("//") ? line.trimStart().slice(1) : line;
      return await outbox.submit(text);
    } catch (error) {
      // A refused message does not end the chat: say why and read on.
      return refused(error);
    }
  });
  const unsent = await outbox.close();
  if (unsent)
    output.emit({ type: "unsent", to: name, ...(group ? { group } : {}), count: unsent, profile: profile.dir });
}

/** `zimchat-chat chat <user-or-group>`: the conversation, live messages, and typed lines sent as you press Enter. */
export async function chat(user: string, options: ChatOptions): Promise<void> {
  // A line gives up on an unreachable homeserver after a few seconds (then it is queued and retried),
  // not the SDK's minute.
  const sendRetry = { maxMs: 4000, attemptTimeoutMs: 10_000 };
  await runCommand(options, (output) =>
    withSession(options.profile, output, (session) => chatWith(session, user, options.history), { sendRetry }),
  );
}
