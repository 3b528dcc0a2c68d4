import type { GroupState } from "../../index.js";
import { CliError } from "../cli-error.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { groupRef, withSession, type Session } from "../session.js";

/** Resolves usernames to account ids, refusing this account itself (it is always in its own groups). */
async function members(session: Session, users: string[]): Promise<{ uuid: string; name: string }[]> {
  const out: { uuid: string; name: string }[] = [];
  for (const user of new Set(users)) out.push(await session.resolveUser(user));
  return out;
}

/** `zimchat-chat group create <title> <members...>`: a new group with this account as its admin. */
export async function createGroup(title: string, users: string[], options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      const name = title.trim();
      if (!name || name.length > 128) throw new CliError("invalid_argument", "a group title is 1 to 128 characters");
      const people = await members(session, users);
      // Receive first: what is waiting may change the sessions the group is announced over.
      await session.connectToSend();
      const group = await session.client.createGroup(
        name,
        people.map((p) => p.uuid),
      );
      output.emit({
        type: "groupChanged",
        group: groupRef(group),
        action: "created",
        users: people.map((p) => p.name),
        members: session.names(group.members),
      });
    }),
  );
}

/** `zimchat-chat group add|remove <group> <users...>` (admins only). */
export async function changeGroup(
  action: "added" | "removed",
  groupName: string,
  users: string[],
  options: CommonOptions,
): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      const { client } = session;
      const group = session.resolveGroup(groupName);
      checkAdmin(session, group, "add or remove members");
      const people = await members(session, users);
      if (action === "added") {
        const already = people.filter((p) => group.members.includes(p.uuid));
        if (already.length === people.length)
          throw new CliError("invalid_argument", `${already.map((p) => p.name).join(", ")} already in ${group.title}`);
      } else {
        const strangers = people.filter((p) => !group.members.includes(p.uuid));
        if (strangers.length)
          throw new CliError("invalid_argument", `${strangers.map((p) => p.name).join(", ")} not in ${group.title}`);
      }
      await session.connectToSend();
      const uuids = people.map((p) => p.uuid);
      const next =
        action === "added"
          ? await client.addGroupMembers(group.id, uuids)
          : await client.removeGroupMembers(group.id, uuids);
      output.emit({
        type: "groupChanged",
        group: groupRef(next),
        action,
        users: people.map((p) => p.name),
        members: session.names(next.members),
      });
    }),
  );
}

/** `zimchat-chat group leave <group>`: any member; the members start new sender keys, so nothing later reaches it. */
export async function leave(groupName: string, options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      const group = session.resolveGroup(groupName);
      if (!group.members.includes(session.client.local.uuid))
        throw new CliError("group_refused", `you are no longer a member of ${group.title}`);
      await session.connectToSend();
      const next = await session.client.leaveGroup(group.id);
      output.emit({
        type: "groupChanged",
        group: groupRef(next),
        action: "left",
        users: [],
        members: session.names(next.members),
      });
    }),
  );
}

/** Refuses a change of a group by anyone but one of its admins. */
function checkAdmin(session: Session, group: GroupState, what: string): void {
  const me = session.client.local.uuid;
  if (!group.members.includes(me)) throw new CliError("group_refused", `you are no longer a member of ${group.title}`);
  if (!group.admins.includes(me)) {
    throw new CliError(
      "group_refused",
      `only an admin of ${group.title} can ${what} (admins: ${session.names(group.admins).join(", ")})`,
    );
  }
}

/** The networks a bridge relays to. */
const networks = ["irc", "xmpp"] as const;

/**
 * Bridges a group through a bot (admins only): the bot becomes a member if it is not one, and every member's client
 * shows the disclosure. The group is its id (the chat passes it) or title.
 */
export async function bridgeIn(
  session: Session,
  groupName: string,
  bot: string,
  network: string,
  target: string,
  attachments: boolean,
): Promise<void> {
  const { client, output } = session;
  const group = session.resolveGroup(groupName);
  checkAdmin(session, group, "bridge it");
  const net = networks.find((n) => n === network.toLowerCase());
  if (!net) throw new CliError("invalid_argument", `"${network}" is not a network a bridge relays to: irc or xmpp`);
  if (!target || target.length > 256)
    throw new CliError("invalid_argument", "a bridge's target (an IRC channel, an XMPP room) has 1 to 256 characters");
  const person = await session.resolveUser(bot);
  const next = await client.bridgeGroup(group.id, { bot: person.uuid, network: net, target, attachments });
  output.emit({
    type: "groupChanged",
    group: groupRef(next),
    action: "bridged",
    users: [person.name],
    members: session.names(next.members),
  });
}

/** Removes a group's bridge and its bot from the members (admins only). */
export async function unbridgeIn(session: Session, groupName: string, bot: string): Promise<void> {
  const { client, output } = session;
  const group = session.resolveGroup(groupName);
  checkAdmin(session, group, "remove its bridges");
  const person = await session.resolveUser(bot);
  if (!group.bridges?.some((b) => b.account === person.uuid))
    throw new CliError("invalid_argument", `${person.name} is not a bridge of ${group.title}`);
  const next = await client.unbridgeGroup(group.id, person.uuid);
  output.emit({
    type: "groupChanged",
    group: groupRef(next),
    action: "unbridged",
    users: [person.name],
    members: session.names(next.members),
  });
}

/** `zimchat-chat group bridge <group> <bot> <irc|xmpp> <target> [--attachments]` (admins only). */
export async function groupBridge(
  groupName: string,
  bot: string,
  network: string,
  target: string,
  options: CommonOptions & { attachments: boolean },
): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      // Fail on an unknown group before connecting.
      session.resolveGroup(groupName);
      await session.connectToSend();
      await bridgeIn(session, groupName, bot, network, target, options.attachments);
    }),
  );
}

/** `zimchat-chat group unbridge <group> <bot>` (admins only). */
export async function groupUnbridge(groupName: string, bot: string, options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      session.resolveGroup(groupName);
      await session.connectToSend();
      await unbridgeIn(session, groupName, bot);
    }),
  );
}

/** `zimchat-chat group list`: the groups this device knows, with their members and bridges. */
export async function listGroups(options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      const me = session.client.local.uuid;
      const groups = session.client.listGroups().sort((a, b) => a.title.localeCompare(b.title));
      for (const g of groups) {
        output.emit({
          type: "group",
          id: g.id,
          title: g.title,
          members: session.names(g.members),
          admins: session.names(g.admins),
          member: g.members.includes(me),
        });
        // Bridges as this device last knew them: only for groups this account is still in.
        if (g.members.includes(me)) session.showBridges(g);
      }
      output.emit({ type: "groupsListed", count: groups.length });
    }),
  );
}

/** Sends a text to a group and reports it. */
export async function sendToGroup(session: Session, groupName: string, text: string, queued = false): Promise<void> {
  const { client, output } = session;
  const group = session.resolveGroup(groupName);
  if (!group.members.includes(client.local.uuid))
    throw new CliError("group_refused", `you are no longer a member of ${group.title}`);
  const sent = await client.sendGroupText(group.id, text);
  const remote = sent.response.remote ?? [];
  const devices =
    sent.response.recipients.reduce((n, r) => n + r.envelopes.length, 0) +
    remote.reduce((n, r) => n + (r.status === 200 ? (r.envelopes?.length ?? 0) : 0), 0);
  // Members of other homeservers whose server refused (or did not answer yet: their homeserver holds the message).
  const notDelivered = remote
    .filter((r) => r.status !== 200 || r.queued)
    .map((r) => ({
      user: session.names([r.uuid])[0] ?? `${r.uuid}@${r.server}`,
      server: r.server,
      code: r.status === 200 ? "held" : (r.error?.code ?? String(r.status)),
    }));
  output.emit({
    type: "groupSent",
    group: groupRef(group),
    text,
    timestamp: sent.timestamp,
    devices,
    ...(queued ? { queued: true as const } : {}),
    ...(notDelivered.length ? { notDelivered } : {}),
  });
}

/** `zimchat-chat group send <group> <text...>`: one encrypted message to every member's devices. */
export async function groupSend(groupName: string, words: string[], options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => {
      const text = words.join(" ");
      if (!text.trim()) throw new CliError("invalid_argument", "the message is empty");
      // Fail on an unknown group before connecting.
      session.resolveGroup(groupName);
      await session.connectToSend();
      await sendToGroup(session, groupName, text);
    }),
  );
}
