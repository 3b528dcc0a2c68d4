import { usernamePattern } from "@zimchat/protocol";
import { InsecureServerUrlError, ZimClient, checkServerUrl } from "../../index.js";
import { CliError, toCliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { Profile } from "../profile.js";
import { runCommand } from "../run.js";

/** `zimchat-chat register` options. */
export interface RegisterOptions extends CommonOptions {
  server: string;
  username: string;
  invite?: string;
  /** Allow plain http:// to a host that is not this machine. @default false */
  allowInsecureHttp?: boolean;
}

/** The homeserver origin from --server, or a clear refusal (plain http:// only to this machine, unless allowed). */
export function serverUrl(value: string, allowInsecureHttp = false): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CliError("invalid_argument", `--server "${value}" is not a URL (like http://127.0.0.1:8080)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new CliError("invalid_argument", `--server must be an http:// or https:// URL, not ${url.protocol}`);
  // A homeserver answers at the root of its origin (REST routes and Socket.IO's /socket.io/ alike; it has no
  // base-path setting), so a path could only be dropped or misused: refuse it rather than talk to another URL.
  if (url.pathname !== "/" || url.search || url.hash) {
    throw new CliError(
      "invalid_argument",
      `--server "${value}" has a path (${url.pathname}${url.search}${url.hash}): a ZimChat homeserver is served at the root of its host, ` +
        `so give only the scheme, host and port, like ${url.origin}. (Behind a reverse proxy, give the homeserver its own host name or port rather than a path.)`,
    );
  }
  if (url.username || url.password)
    throw new CliError(
      "invalid_argument",
      `--server must not carry a user name or password: give only the scheme, host and port, like ${url.origin}`,
    );
  try {
    checkServerUrl(url.origin, { allowInsecureHttp });
  } catch (error) {
    if (error instanceof InsecureServerUrlError)
      throw new CliError("insecure_http", error.message.replace("allowInsecureHttp: true, ", ""));
    throw error;
  }
  return url.origin;
}

/** What {@link registerDevice} made. */
export interface RegisteredDevice {
  username: string;
  uuid: string;
  deviceId: number;
  server: string;
  /** `username@serverName`, when the homeserver federates. */
  address?: string;
}

/**
 * Creates the account and this device in `profile` (checking the server URL
 * and username first); a refused registration leaves no half-made profile.
 * `warn` hears of a first pre-key upload that failed (it is retried later).
 * @throws CliError
 */
export async function registerDevice(
  profile: Profile,
  options: Pick<RegisterOptions, "server" | "username" | "invite" | "allowInsecureHttp">,
  warn: (message: string) => void,
): Promise<RegisteredDevice> {
  const server = serverUrl(options.server, options.allowInsecureHttp);
  if (!usernamePattern.test(options.username)) {
    throw new CliError(
      "invalid_argument",
      `--username "${options.username}" is not a username (3 to 32 of a-z, 0-9, _ and .)`,
    );
  }
  const store = profile.openNewStore();
  let client: ZimClient | null = null;
  try {
    client = await ZimClient.register({
      serverUrl: server,
      username: options.username,
      store,
      allowInsecureHttp: options.allowInsecureHttp ?? false,
      ...(options.invite ? { inviteToken: options.invite } : {}),
    });
  } catch (error) {
    // The SDK stores the device before the server accepts it: a refused
    // registration must not leave a half-made profile behind. Once the
    // server has accepted it (only the first key upload failed), the device
    // is kept: the keys go up on its next connection.
    if (!store.getLocal()?.uuid) {
      store.close();
      profile.discardNewStore();
      throw toCliError(error, { server });
    }
    warn(
      `registered, but the first pre-key upload failed (${toCliError(error, { server }).message}); it is retried on the next connection`,
    );
  }
  const { uuid, deviceId, username } = store.getLocal()!;
  // How users of other homeservers write this account, when the homeserver federates.
  const home = client ? await client.homeServerName().catch(() => null) : null;
  if (client) await client.close();
  else store.close();
  return { username, uuid, deviceId, server, ...(home ? { address: `${username}@${home}` } : {}) };
}

/** `zimchat-chat register`: creates the account and this device in the profile. */
export async function register(options: RegisterOptions): Promise<void> {
  await runCommand(options, async (output) => {
    const profile = new Profile(options.profile);
    const device = await registerDevice(profile, options, (message) => output.emit({ type: "warning", message }));
    const { address, ...rest } = device;
    output.emit({ type: "registered", ...rest, profile: profile.dir, ...(address ? { address } : {}) });
  });
}
