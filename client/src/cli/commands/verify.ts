import { CliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { withSession } from "../session.js";

/** `zimchat-chat verify <user> <number-or-payload...>`: marks the user verified when it matches. */
export async function verify(user: string, parts: string[], options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client, resolveUser }) => {
      const peer = await resolveUser(user);
      if (!(await client.verify(peer.uuid, parts.join(" ")))) {
        throw new CliError("safety_number_mismatch", `that does not match your safety number with ${peer.name}: ${peer.name} is not verified`);
      }
      output.emit({ type: "verified", user: peer.name });
    }),
  );
}
