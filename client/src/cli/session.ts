import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { usernamePattern } from "@zimchat/protocol";
import {
  ApiError,
  bridgeBanner,
  bridgeRemovedNotice,
  parseAddress,
  SqliteDeviceStore,
  ZimClient,
  type AttachmentPointer,
  type BridgeInfo,
  type GroupState,
  type MessageEvent,
  type ZimClientOptions,
} from "../index.js";
import type { AttachmentSummary, BridgeSummary, GroupRef } from "./cli-events.js";
import { CliError, toCliError, type ErrorContext } from "./cli-error.js";
import type { Output } from "./output.js";
import { Profile } from "./profile.js";
import { legacyProfileDir } from "./profile-path.js";

/** A registered device opened from its profile, with the SDK's events wired to the output. */
export interface Session {
  client: ZimClient;
  profile: Profile;
  output: Output;
  /** Messages and group changes reported so far. */
  received(): number;
  /**
   * The account id of a username, or of `name@server` for a user of another homeserver (looked up once, then
   * remembered both ways).
   */
  resolveUser(name: string): Promise<{ uuid: string; name: string }>;
  /** A group this device knows, by id, `group:<id>` or unique title (groups this account is still in come first). */
  resolveGroup(name: string): GroupState;
  /**
   * A username (or `name@server`), or a group (`group:<id-or-title>`, a group id, or a title that is not a
   * username).
   */
  resolveTarget(name: string): Promise<Target>;
  /**
   * The username of an account: the one this profile looked up, else the one
   * the SDK verified (a claim in a message, then a look-up), else the account
   * id. A user of another homeserver is `name@server` (`<account id>@server`
   * while no name is known).
   */
  nameOf(uuid: string): string;
  /** Usernames (where known, else account ids) of a group's members. */
  names(uuids: string[]): string[];
  /** Shows a group's bridges, each with its disclosure banner (nothing when it has none). */
  showBridges(group: GroupState): void;
  /**
   * Connects (showing what was waiting) and refreshes this account's device
   * list before anything is sent, so a device linked since the last run gets
   * the sent transcript too (the SDK refreshes it in the background after
   * connecting, which a send right away would outrun).
   */
  connectToSend(): Promise<void>;
}

/** Whom a message goes to. */
export type Target = { kind: "user"; uuid: string; name: string } | { kind: "group"; group: GroupState };

/** The id and title of a group, as events carry them. */
export const groupRef = (group: GroupState): GroupRef => ({ id: group.id, title: group.title });

/** What an attachment pointer may show: never its key or digest. */
export function attachmentSummary(pointer: AttachmentPointer): AttachmentSummary {
  return {
    ...(pointer.fileName !== undefined ? { fileName: pointer.fileName } : {}),
    size: pointer.size,
    ...(pointer.contentType !== undefined ? { contentType: pointer.contentType } : {}),
  };
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `name` is written as a user: a username, an account id, or either with `@server`. */
function isUserAddress(name: string): boolean {
  if (usernamePattern.test(name) || uuidPattern.test(name)) return true;
  if (!name.includes("@")) return false;
  try {
    parseAddress(name);
    return true;
  } catch {
    return false;
  }
}

/** What `name@server` and `name` look like, for messages. */
const userForms = "a username (3 to 32 of a-z, 0-9, _ and .), or name@server for a user of another homeserver";

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Opens the device in `profileDir`, runs `work`, and closes the device
 * whatever happens. Errors come out as {@link CliError}s that name people by
 * username.
 */
export async function withSession<T>(
  profileDir: string,
  output: Output,
  work: (session: Session) => Promise<T>,
  clientOptions: Pick<ZimClientOptions, "sendRetry"> = {},
): Promise<T> {
  const opened = openSession(profileDir, output, clientOptions);
  try {
    return await work(opened.session);
  } catch (error) {
    throw toCliError(error, opened.context);
  } finally {
    await opened.close();
  }
}

/** A device opened by {@link openSession}, until its `close`. */
export interface OpenSession {
  session: Session;
  /** The profile's store (the client's, as SQLite). */
  store: SqliteDeviceStore;
  /** For {@link toCliError}: the homeserver and how people are named. */
  context: ErrorContext;
  /** Closes the client and its store; background warnings from then on are not reported. */
  close(): Promise<void>;
}

/**
 * Opens the device in `profileDir` with the SDK's events wired to `output`,
 * for work that outlives one call ({@link withSession} for one command, the
 * web daemon for its lifetime). The caller closes it.
 * @throws CliError `not_registered`
 */
export function openSession(
  profileDir: string,
  output: Output,
  clientOptions: Pick<ZimClientOptions, "sendRetry"> = {},
): OpenSession {
  const profile = new Profile(profileDir);
  if (!profile.hasStore()) {
    // zimchat-chat used to keep the default profile in ./.zimchat-chat: point there rather than look unregistered.
    const legacy = resolve(legacyProfileDir);
    const hint =
      legacy !== profile.dir && existsSync(join(legacy, "device.db"))
        ? ` (an older zimchat-chat left a profile in ${legacy}: pass --profile ./${legacyProfileDir}, or move it to ${profile.dir})`
        : "";
    throw new CliError(
      "not_registered",
      `no device in ${profile.dir}${hint}: run zimchat-chat register --server <url> --username <name> first, or pass --profile <dir>`,
    );
  }
  const store = new SqliteDeviceStore(profile.storePath);
  if (!store.getLocal()?.uuid) {
    store.close();
    throw new CliError(
      "not_registered",
      `the device in ${profile.dir} never finished registering: delete that directory and register again`,
    );
  }
  const client = new ZimClient({ store, ...clientOptions });
  const { contacts } = profile;
  const self = client.local;
  // Group member lists name this account too.
  contacts.remember(self.uuid, self.username);
  // A username the SDK verified (claimed inside a message, then looked up) names someone this profile never looked up.
  const nameOf = (uuid: string): string => {
    const known = contacts.nameOf(uuid);
    if (known !== uuid) return known;
    const verified = client.nameOf(uuid);
    // Unknown: the account id, with its server when it belongs to another homeserver.
    if (!verified?.verified) return client.addressOf(uuid);
    contacts.remember(uuid, verified.username);
    return verified.username;
  };
  const context = { server: self.serverUrl, nameOf };
  const names = (uuids: string[]): string[] => uuids.map((u) => nameOf(u));
  let received = 0;
  let closing = false;

  client.on("message", (m) => {
    received++;
    const group = m.group ? client.group(m.group) : null;
    const extra = {
      ...(m.group ? { group: group ? groupRef(group) : { id: m.group, title: m.group } } : {}),
      ...(m.attachment ? { attachment: attachmentSummary(m.attachment) } : {}),
    };
    if (m.attachment) profile.attachments.remember(m.envelopeId, m.conversation);
    if (m.outgoing) {
      const to = m.group ? (group?.title ?? m.group) : nameOf(m.conversation);
      output.emit({
        type: "outgoing",
        to,
        ...(m.group ? {} : { toUuid: m.conversation }),
        fromDevice: m.fromDevice,
        text: m.text,
        timestamp: m.timestamp,
        envelopeId: m.envelopeId,
        ...extra,
      });
      return;
    }
    output.emit({
      type: "message",
      from: senderLabel(m, nameOf(m.from)),
      ...(m.fromServer ? { fromServer: m.fromServer } : {}),
      fromUuid: m.from,
      fromDevice: m.fromDevice,
      text: m.text,
      timestamp: m.timestamp,
      envelopeId: m.envelopeId,
      ...extra,
    });
  });
  client.on("groupUpdated", (u) => {
    received++;
    output.emit({
      type: "groupUpdated",
      group: groupRef(u.group),
      by: nameOf(u.by),
      byUuid: u.by,
      byThisAccount: u.by === self.uuid,
      added: names(u.added),
      removed: names(u.removed),
      joined: u.added.includes(self.uuid),
      left: u.left,
      members: names(u.group.members),
    });
  });
  const bridgeSummary = (b: BridgeInfo): BridgeSummary => ({
    bot: nameOf(b.account),
    botUuid: b.account,
    network: b.network,
    target: b.target,
    attachments: b.attachments,
  });
  client.on("bridgesChanged", (e) => {
    const group = client.group(e.groupId);
    output.emit({
      type: "bridgesChanged",
      group: group ? groupRef(group) : { id: e.groupId, title: e.groupId },
      bridges: e.bridges.map(bridgeSummary),
      added: e.added.map(bridgeSummary),
      removed: e.removed.map(bridgeSummary),
      banners: e.bridges.map((b) => bridgeBanner(b)),
      // A changed bridge is in both lists: only bridges that ended get a notice.
      notices: e.removed
        .filter((r) => !e.bridges.some((b) => b.account === r.account))
        .map((b) => bridgeRemovedNotice(b)),
    });
  });
  client.on("deviceListChanged", ({ added, removed }) => {
    // This device's own arrival is no news to it.
    const others = added.filter((id) => id !== self.deviceId);
    if (others.length || removed.length) output.emit({ type: "devicesChanged", added: others, removed });
  });
  client.on("identityChanged", ({ uuid, blocked }) =>
    output.emit({ type: "identityChanged", user: nameOf(uuid), uuid, blocked }),
  );
  client.on("deliveryReceipt", ({ from, timestamps }) =>
    output.emit({ type: "receipt", from: nameOf(from), fromUuid: from, timestamps }),
  );
  client.on("decryptionFailed", ({ from, reason }) =>
    output.emit({ type: "decryptionFailed", from: from ? nameOf(from) : null, fromUuid: from ?? null, reason }),
  );
  client.on("remoteDeliveryFailed", (f) =>
    output.emit({
      type: "remoteDeliveryFailed",
      to: nameOf(f.to),
      toUuid: f.to,
      server: f.server,
      reason: f.reason,
      ...(f.text !== undefined ? { text: f.text } : {}),
      ...(f.timestamp !== undefined ? { timestamp: f.timestamp } : {}),
      ...(f.error !== undefined ? { error: errorMessage(f.error) } : {}),
    }),
  );
  client.on("serverBindingRefused", ({ uuid, boundTo, claimed }) =>
    output.emit({ type: "serverBindingRefused", user: nameOf(uuid), uuid, boundTo, claimed }),
  );
  // Background work still finishing after close (key upkeep, a receipt) fails against the closed store;
  // that is expected.
  client.on("warning", (error) => {
    if (!closing) output.emit({ type: "warning", message: errorMessage(error) });
  });

  const session: Session = {
    client,
    profile,
    output,
    received: () => received,
    async resolveUser(name) {
      if (!isUserAddress(name)) throw new CliError("invalid_argument", `"${name}" is not ${userForms}`);
      const address = parseAddress(name);
      let uuid: string;
      try {
        uuid = await client.resolve(name);
      } catch (error) {
        if (error instanceof ApiError && error.code === "not_found") {
          const where = address.server ?? client.local.serverUrl;
          throw new CliError("unknown_user", `there is no user ${address.name} on ${where}`, { cause: error });
        }
        throw error;
      }
      if (uuid === client.local.uuid)
        throw new CliError("invalid_argument", `${name} is this device's own account: name someone else`);
      // Remembered as the SDK names it: `name` for this homeserver's users (however typed), `name@server` otherwise.
      if (!uuidPattern.test(address.name)) contacts.remember(uuid, client.nameOf(uuid)?.username ?? name);
      return { uuid, name: nameOf(uuid) };
    },
    resolveGroup(name) {
      const wanted = name.startsWith("group:") ? name.slice("group:".length) : name;
      const groups = client.listGroups();
      const byId = groups.find((g) => g.id === wanted);
      if (byId) return byId;
      let titled = groups.filter((g) => g.title === wanted);
      if (!titled.length) titled = groups.filter((g) => g.title.toLowerCase() === wanted.toLowerCase());
      // A title reused after this account left a group names the group it is in.
      const current = titled.filter((g) => g.members.includes(self.uuid));
      const candidates = current.length ? current : titled;
      if (candidates.length === 1) return candidates[0]!;
      if (candidates.length > 1) {
        throw new CliError(
          "ambiguous_group",
          `${candidates.length} groups are called "${wanted}": name one by its id (${candidates.map((g) => g.id).join(", ")})`,
        );
      }
      throw new CliError(
        "unknown_group",
        `this device knows no group "${wanted}" (zimchat-chat group list shows the groups it knows)`,
      );
    },
    async resolveTarget(name) {
      if (name.startsWith("group:") || client.listGroups().some((g) => g.id === name))
        return { kind: "group", group: session.resolveGroup(name) };
      if (isUserAddress(name)) return { kind: "user", ...(await session.resolveUser(name)) };
      try {
        return { kind: "group", group: session.resolveGroup(name) };
      } catch (error) {
        if (!(error instanceof CliError) || error.code !== "unknown_group") throw error;
        throw new CliError(
          "invalid_argument",
          `"${name}" is neither ${userForms}, nor a group this device knows (zimchat-chat group list)`,
        );
      }
    },
    nameOf,
    names,
    showBridges(group) {
      for (const b of client.groupBridges(group.id))
        output.emit({ type: "bridge", group: groupRef(group), bridge: bridgeSummary(b), banner: bridgeBanner(b) });
    },
    async connectToSend() {
      await client.connect();
      await client.devices();
    },
  };
  return {
    session,
    store,
    context,
    async close() {
      closing = true;
      await client.close();
    },
  };
}

/**
 * How the sender of a direct message is named: the username this profile
 * knows, else the one the sender claimed once the SDK verified it, else the
 * account id, marked with an unverified claim (`d2716171… (claims "bob", unverified)`); a user of another
 * homeserver with `@server` (`bob@news.example`, `d2716171…@news.example (claims …)`).
 */
function senderLabel(m: MessageEvent, known: string): string {
  const claim = m.senderName;
  const at = m.fromServer ? `@${m.fromServer}` : "";
  if (known !== `${m.from}${at}` || !claim) return known;
  if (claim.verified) return claim.username;
  return `${m.from.slice(0, 8)}…${at} (claims ${JSON.stringify(claim.username)}, unverified)`;
}
