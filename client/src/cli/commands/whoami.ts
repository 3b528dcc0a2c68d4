import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { withSession } from "../session.js";

/** `zimchat-chat whoami`: this device's username, account and homeserver (no network). */
export async function whoami(options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client, profile }) => {
      const { username, uuid, deviceId, serverUrl } = client.local;
      const home = client.knownHomeServerName();
      output.emit({
        type: "whoami",
        username,
        uuid,
        deviceId,
        server: serverUrl,
        profile: profile.dir,
        ...(home ? { address: `${username}@${home}` } : {}),
      });
    }),
  );
}
