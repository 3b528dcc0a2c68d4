import { CliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { withSession } from "../session.js";

/** `zimchat-chat verify <user> <number-or-payload...>`: marks the user verified when it matches. */
export async function verify(user: string, parts: string[], options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client, resolveUser }) => {
      const entered = parts.join(" ");
      // Digits (spaces aside) are a safety number read off a screen; anything else is a scanned payload.
      const digits = entered.replace(/\s+/g, "");
      if (/^\d+$/.test(digits) && digits.length !== 60) {
        throw new CliError(
          "invalid_argument",
          `expected 60 digits, got ${digits.length}: a safety number is twelve groups of five digits (zimchat-chat safety-number ${user} shows yours)`,
        );
      }
      const peer = await resolveUser(user);
      if (!(await client.verify(peer.uuid, entered))) {
        throw new CliError(
          "safety_number_mismatch",
          `that does not match your safety number with ${peer.name}: ${peer.name} is not verified`,
        );
      }
      output.emit({ type: "verified", user: peer.name });
    }),
  );
}
