/**
 * The web daemon's group management (`GET /api/groups/:id`,
 * `POST /api/groups/:id/members`, `POST /api/groups/:id/leave`): a group's
 * members with their names and admin marks, adding and removing members
 * (admins only), and leaving. It works on the daemon's open session.
 */
import { GroupError, type GroupState } from "../index.js";
import { CliError } from "../cli/cli-error.js";
import type { OpenSession } from "../cli/session.js";
import type { WebGroup, WebGroupMember } from "./api.js";
import { WebApiError, toWebApiError } from "./web-device.js";

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A group by its conversation id (`group:<id>`) or bare id. @throws WebApiError `unknown_group` (404) */
function findGroup(opened: OpenSession, id: string): GroupState {
  const bare = id.startsWith("group:") ? id.slice("group:".length) : id;
  const group = uuidPattern.test(bare) ? opened.session.client.group(bare) : null;
  if (!group) throw new WebApiError(404, "unknown_group", `this device knows no group ${id}`);
  return group;
}

/** How a member is shown: its username (as the conversation list names people), else a short account id. */
function memberName(opened: OpenSession, uuid: string): string {
  const name = opened.session.nameOf(uuid);
  return uuidPattern.test(name.slice(0, 36)) ? name.slice(0, 8) + name.slice(36) : name;
}

/** The API's view of a group. */
export function webGroup(opened: OpenSession, group: GroupState): WebGroup {
  const me = opened.session.client.local.uuid;
  const members = group.members.map((uuid): WebGroupMember => ({
    uuid,
    name: uuid === me ? opened.session.client.local.username : memberName(opened, uuid),
    admin: group.admins.includes(uuid),
    ...(uuid === me ? { you: true } : {}),
  }));
  // Admins first, then by name: the order a member list is read in.
  members.sort((a, b) => Number(b.admin) - Number(a.admin) || a.name.localeCompare(b.name));
  return {
    id: `group:${group.id}`,
    title: group.title,
    members,
    admin: group.admins.includes(me),
    member: group.members.includes(me),
  };
}

/** Refuses a change by anyone but a current admin, with the codes the page tells apart. */
function checkAdmin(opened: OpenSession, group: GroupState): void {
  const { session } = opened;
  const me = session.client.local.uuid;
  if (!group.members.includes(me))
    throw new WebApiError(409, "not_group_member", `you are no longer a member of ${group.title}`);
  if (!group.admins.includes(me))
    throw new WebApiError(
      409,
      "not_group_admin",
      `only an admin of ${group.title} can add or remove members (admins: ${session.names(group.admins).join(", ")})`,
    );
}

/** `GET /api/groups/:id`. */
export function getGroup(opened: OpenSession, id: string): WebGroup {
  return webGroup(opened, findGroup(opened, id));
}

/**
 * `POST /api/groups/:id/members`: adds `add` (usernames) then removes `remove`
 * (usernames or account ids); admins only. Each is one group change.
 */
export async function changeMembers(
  opened: OpenSession,
  id: string,
  change: { add?: string[] | undefined; remove?: string[] | undefined },
): Promise<WebGroup> {
  const { session } = opened;
  const { client } = session;
  let group = findGroup(opened, id);
  checkAdmin(opened, group);
  const add = [...new Set(change.add ?? [])];
  const remove = [...new Set(change.remove ?? [])];
  if (!add.length && !remove.length)
    throw new WebApiError(400, "invalid_argument", "name at least one member to add or remove");
  try {
    const added: string[] = [];
    for (const user of add) {
      const { uuid } = await session.resolveUser(user);
      if (!group.members.includes(uuid)) added.push(uuid);
    }
    const removed: string[] = [];
    for (const user of remove) {
      const uuid = group.members.includes(user) ? user : (await session.resolveUser(user)).uuid;
      if (!group.members.includes(uuid))
        throw new CliError("invalid_argument", `${memberName(opened, uuid)} is not in ${group.title}`);
      if (uuid === client.local.uuid)
        throw new CliError("invalid_argument", "to take yourself out of a group, leave it");
      removed.push(uuid);
    }
    if (!added.length && !removed.length)
      throw new CliError("invalid_argument", `${add.join(", ")} already in ${group.title}`);
    if (added.length) group = await client.addGroupMembers(group.id, added);
    if (removed.length) group = await client.removeGroupMembers(group.id, removed);
  } catch (error) {
    throw toWebApiError(error, opened.context);
  }
  return webGroup(opened, group);
}

/** `POST /api/groups/:id/leave`: any member; the only admin (or member) is refused with `last_group_admin`. */
export async function leaveGroup(opened: OpenSession, id: string): Promise<WebGroup> {
  const group = findGroup(opened, id);
  const me = opened.session.client.local.uuid;
  if (!group.members.includes(me))
    throw new WebApiError(409, "not_group_member", `you are no longer a member of ${group.title}`);
  if (group.admins.length === 1 && group.admins[0] === me)
    throw new WebApiError(
      409,
      "last_group_admin",
      group.members.length > 1
        ? `you are the only admin of ${group.title}: remove the other members first, then leave`
        : `you are the only member of ${group.title}`,
    );
  try {
    return webGroup(opened, await opened.session.client.leaveGroup(group.id));
  } catch (error) {
    if (error instanceof GroupError) throw new WebApiError(409, "group_refused", error.message, { cause: error });
    throw toWebApiError(error, opened.context);
  }
}
