import { existsSync, statSync } from "node:fs";
import { basename, extname, join, resolve } from "node:path";
import type { StoredMessage } from "../../index.js";
import { CliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { withSession, type Session } from "../session.js";

/** `zimchat-chat download` options. */
export interface DownloadOptions extends CommonOptions {
  /** Where to save: a file, or a directory to save into under the sender's file name. */
  out?: string;
}

/**
 * A file name from the sender that is safe to create in a directory: no
 * path, no control characters, not hidden, never empty.
 */
export function safeFileName(name: string | undefined, messageId: string): string {
  const cleaned = basename((name ?? "").replace(/[\\/]/g, "_"))
    .replace(/[\u0000-\u001f\u007f]/g, "")
    .replace(/^\.+/, "")
    .trim();
  return cleaned || `attachment-${messageId.slice(0, 8)}`;
}

/**
 * `dir/name`, or `dir/name (2).ext` and so on when that exists: a download never replaces a file it was not told to.
 */
function freePath(dir: string, name: string): string {
  const ext = extname(name);
  const stem = name.slice(0, name.length - ext.length);
  let candidate = join(dir, name);
  for (let n = 2; existsSync(candidate); n++) candidate = join(dir, `${stem} (${n})${ext}`);
  return candidate;
}

/**
 * The stored message with this id and an attachment: looked up in its conversation, else in every conversation this
 * device can name.
 */
async function findAttachment(session: Session, messageId: string): Promise<StoredMessage | null> {
  const { client, profile } = session;
  const indexed = profile.attachments.conversationOf(messageId);
  const conversations = [
    ...(indexed ? [indexed] : []),
    ...client.listGroups().map((g) => `group:${g.id}`),
    ...profile.contacts.uuids().filter((u) => u !== client.local.uuid),
  ];
  for (const conversation of new Set(conversations)) {
    const found = (await client.conversation(conversation, 1_000_000)).find((m) => m.id === messageId && m.attachment);
    if (found) return found;
  }
  return null;
}

/**
 * `zimchat-chat download <messageId>`: fetches, checks and decrypts a received attachment, from this homeserver or,
 * for a file from another server's user, through it from theirs.
 */
export async function download(messageId: string, options: DownloadOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      const message = await findAttachment(session, messageId.trim());
      const pointer = message?.attachment;
      if (!message || !pointer) {
        throw new CliError(
          "unknown_message",
          `this device has no message ${messageId} with a file (receive and chat show each file's message id)`,
        );
      }
      const name = safeFileName(pointer.fileName, message.id);
      let path: string;
      if (options.out === undefined) path = freePath(process.cwd(), name);
      else if (existsSync(options.out) && statSync(options.out).isDirectory())
        path = freePath(resolve(options.out), name);
      else path = resolve(options.out);
      // A file from another server's user kept before the pointer recorded its server: the author's server stores it.
      const author = message.direction === "in" ? (message.author ?? message.peer) : undefined;
      const server = pointer.server ?? (author ? session.client.serverOf(author) : null);
      await session.client.downloadAttachment({ ...pointer, ...(server ? { server } : {}) }, path);
      output.emit({
        type: "downloaded",
        messageId: message.id,
        path,
        size: pointer.size,
        ...(pointer.fileName !== undefined ? { fileName: pointer.fileName } : {}),
      });
    }),
  );
}
