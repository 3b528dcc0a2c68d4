import { usernamePattern } from "@zimchat/protocol";
import { ApiError, SqliteDeviceStore, ZimClient } from "../index.js";
import { CliError, toCliError } from "./cli-error.js";
import type { Output } from "./output.js";
import { Profile } from "./profile.js";

/** A registered device opened from its profile, with the SDK's events wired to the output. */
export interface Session {
  client: ZimClient;
  profile: Profile;
  output: Output;
  /** Text messages reported so far. */
  received(): number;
  /** The account id of a username (looked up once, then remembered both ways). */
  resolveUser(name: string): Promise<{ uuid: string; name: string }>;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Opens the device in `profileDir`, runs `work`, and closes the device
 * whatever happens. Errors come out as {@link CliError}s that name people by
 * username.
 */
export async function withSession<T>(profileDir: string, output: Output, work: (session: Session) => Promise<T>): Promise<T> {
  const profile = new Profile(profileDir);
  if (!profile.hasStore()) {
    throw new CliError("not_registered", `no device in ${profile.dir}: run zimchat-chat register --server <url> --username <name> first, or pass --profile <dir>`);
  }
  const store = new SqliteDeviceStore(profile.storePath);
  if (!store.getLocal()?.uuid) {
    store.close();
    throw new CliError("not_registered", `the device in ${profile.dir} never finished registering: delete that directory and register again`);
  }
  const client = new ZimClient({ store });
  const { contacts } = profile;
  const context = { server: client.local.serverUrl, nameOf: (uuid: string) => contacts.nameOf(uuid) };
  let received = 0;
  let closing = false;

  client.on("message", (m) => {
    received++;
    output.emit({ type: "message", from: contacts.nameOf(m.from), fromUuid: m.from, fromDevice: m.fromDevice, text: m.text, timestamp: m.timestamp, envelopeId: m.envelopeId });
  });
  client.on("identityChanged", ({ uuid, blocked }) => output.emit({ type: "identityChanged", user: contacts.nameOf(uuid), uuid, blocked }));
  client.on("deliveryReceipt", ({ from, timestamps }) => output.emit({ type: "receipt", from: contacts.nameOf(from), fromUuid: from, timestamps }));
  client.on("decryptionFailed", ({ from, reason }) =>
    output.emit({ type: "decryptionFailed", from: from ? contacts.nameOf(from) : null, fromUuid: from ?? null, reason }),
  );
  // Background work still finishing after close (key upkeep, a receipt) fails against the closed store; that is expected.
  client.on("warning", (error) => {
    if (!closing) output.emit({ type: "warning", message: errorMessage(error) });
  });

  const session: Session = {
    client,
    profile,
    output,
    received: () => received,
    async resolveUser(name) {
      if (!usernamePattern.test(name) && !uuidPattern.test(name)) {
        throw new CliError("invalid_argument", `"${name}" is not a username (3 to 32 of a-z, 0-9, _ and .)`);
      }
      let uuid: string;
      try {
        uuid = await client.resolve(name);
      } catch (error) {
        if (error instanceof ApiError && error.code === "not_found") throw new CliError("unknown_user", `there is no user ${name} on ${client.local.serverUrl}`, { cause: error });
        throw error;
      }
      if (uuid === client.local.uuid) throw new CliError("invalid_argument", `${name} is this device's own account: name someone else`);
      if (uuid !== name) contacts.remember(uuid, name);
      return { uuid, name: contacts.nameOf(uuid) };
    },
  };
  try {
    return await work(session);
  } catch (error) {
    throw toCliError(error, context);
  } finally {
    closing = true;
    await client.close();
  }
}
