import { ApiError } from "../../index.js";
import { CliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { withSession } from "../session.js";

/**
 * `zimchat-chat devices`: this account's devices, when each was created and last seen (days only: the server keeps no
 * more).
 */
export async function devices(options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client }) => {
      const current = client.local.deviceId;
      for (const d of await client.devices()) {
        output.emit({ type: "device", id: d.id, created: d.created, lastSeen: d.lastSeen, current: d.id === current });
      }
    }),
  );
}

/** `zimchat-chat unlink <deviceId>`: removes a device from this account (the primary any other, any device itself). */
export async function unlink(deviceId: number, options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client }) => {
      const { deviceId: current, username } = client.local;
      if (deviceId === 1)
        throw new CliError("invalid_argument", "device 1 is the primary device and cannot be unlinked");
      if (current !== 1 && deviceId !== current) {
        throw new CliError(
          "not_primary",
          `this is ${username}'s device ${current}: only the primary device (device 1) can unlink other devices`,
        );
      }
      try {
        await client.unlinkDevice(deviceId);
      } catch (error) {
        if (error instanceof ApiError && error.code === "not_found") {
          throw new CliError(
            "invalid_argument",
            `${username} has no device ${deviceId} (zimchat-chat devices lists them)`,
            { cause: error },
          );
        }
        // Unlinking itself, the device loses its credentials before it can list the devices again.
        if (!(deviceId === current && error instanceof ApiError && error.code === "unauthorized")) throw error;
      }
      output.emit({ type: "unlinked", deviceId, current: deviceId === current });
    }),
  );
}
