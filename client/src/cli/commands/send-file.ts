import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { CliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { groupRef, withSession, type Session, type Target } from "../session.js";

/** `zimchat-chat send-file` options. */
export interface SendFileOptions extends CommonOptions {
  /** Text sent with the file. */
  caption?: string;
}

/** Checks that `path` is a readable regular file, and returns its size. */
export async function fileSize(path: string): Promise<number> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    throw new CliError(
      "invalid_argument",
      `cannot read ${path}: ${(error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message}`,
      { cause: error },
    );
  }
  if (!info.isFile()) throw new CliError("invalid_argument", `${path} is not a file`);
  return info.size;
}

/** Encrypts and uploads a file, sends its pointer to a user or group, and reports it. */
export async function sendFileTo(session: Session, target: Target, path: string, caption: string): Promise<void> {
  const { client, output } = session;
  const size = await fileSize(path);
  const fileName = basename(path);
  const options = { fileName, ...(caption ? { caption } : {}) };
  if (target.kind === "group") {
    if (!target.group.members.includes(client.local.uuid))
      throw new CliError("group_refused", `you are no longer a member of ${target.group.title}`);
    const sent = await client.sendGroupAttachment(target.group.id, path, options);
    output.emit({
      type: "fileSent",
      to: target.group.title,
      group: groupRef(target.group),
      fileName,
      size,
      caption,
      timestamp: sent.timestamp,
    });
  } else {
    const sent = await client.sendAttachment(target.uuid, path, options);
    output.emit({
      type: "fileSent",
      to: target.name,
      toUuid: target.uuid,
      fileName,
      size,
      caption,
      timestamp: sent.timestamp,
    });
  }
}

/**
 * `zimchat-chat send-file <user-or-group> <path>`: an end-to-end encrypted file (the server stores only padded
 * ciphertext).
 */
export async function sendFile(to: string, path: string, options: SendFileOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      await fileSize(path);
      const target = await session.resolveTarget(to);
      // Receive first: what is waiting may change the sessions this message is encrypted with.
      await session.connectToSend();
      await sendFileTo(session, target, path, options.caption ?? "");
    }),
  );
}
