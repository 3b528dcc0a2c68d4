import { CliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { withSession } from "../session.js";

/** `zimchat-chat send <user> <text...>`: connects (showing what was waiting), sends, disconnects. */
export async function send(user: string, words: string[], options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client, resolveUser, connectToSend }) => {
      const text = words.join(" ");
      if (!text.trim()) throw new CliError("invalid_argument", "the message is empty");
      const peer = await resolveUser(user);
      // Receive first: what is waiting may change the sessions this message is encrypted with.
      await connectToSend();
      const sent = await client.sendText(peer.uuid, text);
      output.emit({
        type: "sent",
        to: peer.name,
        toUuid: peer.uuid,
        text,
        timestamp: sent.timestamp,
        devices: sent.envelopes.length,
        ...(sent.queued ? { heldByHomeserver: true as const } : {}),
      });
    }),
  );
}
