import { ZimClient } from "../../index.js";
import { CliError, toCliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { Profile } from "../profile.js";
import { terminalQr } from "../qr.js";
import { runCommand } from "../run.js";
import { withSession } from "../session.js";
import { serverUrl } from "./register.js";

/** `zimchat-chat link` options. */
export interface LinkOptions extends CommonOptions {
  server: string;
  /** Allow plain http:// to a host that is not this machine. @default false */
  allowInsecureHttp?: boolean;
}

/**
 * `zimchat-chat link`: makes this (new, empty) profile another device of an
 * existing account. Shows the link URI as text and a QR code, waits until
 * the primary device approves it, then registers this device's own keys.
 */
export async function link(options: LinkOptions): Promise<void> {
  await runCommand(options, async (output) => {
    const server = serverUrl(options.server, options.allowInsecureHttp);
    const profile = new Profile(options.profile);
    const store = profile.openNewStore();
    const cancel = new AbortController();
    const stop = (): void => cancel.abort();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    let shown: Promise<void> = Promise.resolve();
    let client: ZimClient | null = null;
    try {
      client = await ZimClient.link({
        serverUrl: server,
        store,
        allowInsecureHttp: options.allowInsecureHttp ?? false,
        signal: cancel.signal,
        onLinkCode: ({ uri, expiresAt }) => {
          // The QR code is drawn asynchronously; the wait for approval starts meanwhile.
          shown = output.json
            ? Promise.resolve(output.emit({ type: "linkCode", uri, expiresAt }))
            : terminalQr(uri, output.colour).then((qr) => output.emit({ type: "linkCode", uri, expiresAt, qr }));
        },
      });
    } catch (error) {
      await shown.catch(() => undefined);
      // Nothing is kept of a link that did not finish: the next try starts clean. Once the
      // server has the device (only the first key upload failed), it is kept, as register does.
      if (!store.getLocal()?.deviceId) {
        store.close();
        profile.discardNewStore();
        if (cancel.signal.aborted)
          throw new CliError("cancelled", "linking cancelled: this device was not linked", { cause: error });
        throw toCliError(error, { server });
      }
      output.emit({
        type: "warning",
        message: `linked, but the first pre-key upload failed (${toCliError(error, { server }).message}); it is retried on the next connection`,
      });
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
    await shown;
    const { uuid, deviceId, username } = store.getLocal()!;
    profile.contacts.remember(uuid, username);
    if (client) await client.close();
    else store.close();
    output.emit({ type: "linked", username, uuid, deviceId, server, profile: profile.dir });
  });
}

/** `zimchat-chat approve-link <uri>`: on the primary device, approves a new device's link request. */
export async function approveLink(uri: string, options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client }) => {
      const { deviceId, username } = client.local;
      if (deviceId !== 1) {
        throw new CliError(
          "not_primary",
          `this is ${username}'s device ${deviceId}: only the primary device (device 1) can approve a new device`,
        );
      }
      await client.approveLink(uri);
      output.emit({ type: "linkApproved", username });
    }),
  );
}
