import { CliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { withSession } from "../session.js";

/** `zimchat-chat accept <user>`: accepts a changed key without verifying it. */
export async function accept(user: string, options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client, resolveUser }) => {
      const peer = await resolveUser(user);
      const before = await client.trustState(peer.uuid);
      if (!before)
        throw new CliError(
          "unknown_contact",
          `you have never exchanged keys with ${peer.name}: there is nothing to accept`,
        );
      await client.acceptIdentityChange(peer.uuid);
      output.emit({ type: "accepted", user: peer.name, wasBlocked: before.blocked });
    }),
  );
}
