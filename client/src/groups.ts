/**
 * Client-managed groups: the server stores no group state. A group's id,
 * title, members and admins live in each member's store and change through
 * encrypted `groupUpdate` messages from an admin (or from a member leaving,
 * whose update only takes that member out); messages use libsignal
 * sender keys, one distribution per sender device and group, replaced
 * whenever a member is removed.
 *
 * Federation: members may belong to other homeservers. A group state names
 * them in `memberServers`, relative to whoever sent it; each device binds
 * members it never saw to the server named there (see federation.ts), keeps
 * the state in its own view, and routes by its own bindings.
 */
import { randomUUID } from "node:crypto";
import { bridgesOf, validBridges } from "./bridges.js";
import type { GroupState } from "./content.js";
import type { ServerBindings } from "./federation.js";
import type { DeviceStore } from "./store/device-store.js";

/** The conversation key of a group in the message history. */
export const groupConversation = (groupId: string): string => `group:${groupId}`;

/** A group's 16 id bytes, for libsignal's sealed-sender group id field. */
export function groupIdBytes(groupId: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(groupId.replace(/-/g, ""), "hex")) as Uint8Array<ArrayBuffer>;
}

/** Group state and this device's sender-key bookkeeping, in the device store. */
export class GroupStore {
  constructor(private readonly store: DeviceStore) {}

  get(groupId: string): GroupState | null {
    const value = this.store.getValue(`group:${groupId}`);
    return value ? (JSON.parse(value) as GroupState) : null;
  }

  save(group: GroupState): void {
    this.store.setValue(`group:${group.id}`, JSON.stringify(group));
  }

  list(): GroupState[] {
    return this.store.valuesWithPrefix("group:").map(([, v]) => JSON.parse(v) as GroupState);
  }

  /** This device's current sender-key distribution id for a group (made on first use). */
  distributionId(groupId: string): string {
    let id = this.store.getValue(`groupDistribution:${groupId}`);
    if (!id) {
      id = randomUUID();
      this.store.setValue(`groupDistribution:${groupId}`, id);
      this.store.setValue(`groupKeySentTo:${groupId}`, "[]");
    }
    return id;
  }

  /** Starts a new sender key for a group: nobody has it yet, so removed members cannot read what follows. */
  rotate(groupId: string): void {
    this.store.setValue(`groupDistribution:${groupId}`, "");
    this.store.setValue(`groupKeySentTo:${groupId}`, "[]");
  }

  /** Device addresses (`uuid.deviceId`) that hold this device's current sender key for the group. */
  keyHolders(groupId: string): Set<string> {
    return new Set(JSON.parse(this.store.getValue(`groupKeySentTo:${groupId}`) || "[]") as string[]);
  }

  /**
   * Forgets that an account's devices hold this device's sender key (their devices changed: a device id may now be
   * a new install), so that it is sent to them again.
   */
  forgetKeyHolders(groupId: string, uuid: string): void {
    const holders = [...this.keyHolders(groupId)].filter((a) => !a.startsWith(`${uuid}.`));
    this.store.setValue(`groupKeySentTo:${groupId}`, JSON.stringify(holders));
  }

  addKeyHolders(groupId: string, addresses: string[]): void {
    const holders = this.keyHolders(groupId);
    for (const a of addresses) holders.add(a);
    this.store.setValue(`groupKeySentTo:${groupId}`, JSON.stringify([...holders]));
  }
}

/**
 * A group state in this device's view: `memberServers` names each member
 * bound to another server (omitted when there is none).
 */
export function inOwnView(group: GroupState, servers: Pick<ServerBindings, "remoteServerOf">): GroupState {
  const { memberServers: _, ...rest } = group;
  const memberServers: Record<string, string> = {};
  for (const uuid of group.members) {
    const server = servers.remoteServerOf(uuid);
    if (server !== null) memberServers[uuid] = server;
  }
  return Object.keys(memberServers).length ? { ...rest, memberServers } : rest;
}

/**
 * Binds the members of a group update sent by `from` that this device
 * never bound: to the server the update names for them, else to the
 * sender's own server. A member bound elsewhere keeps its binding (the
 * sender's word does not move it). Run inside a store task.
 */
export function bindMembers(group: GroupState, from: string, servers: ServerBindings): void {
  const senderServer = servers.serverOf(from) ?? null;
  for (const uuid of group.members) {
    if (servers.serverOf(uuid) !== undefined) continue;
    const named = group.memberServers?.[uuid];
    servers.bind(uuid, named === undefined ? senderServer : servers.normalize(named));
  }
}

const sameSet = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && new Set(a).size === b.length && a.every((x) => b.includes(x));

/**
 * Whether `update` is `current` with `member` gone and nothing else changed:
 * `member` left (out of the members and admins, its bridge gone with it),
 * the title and the other bridges as they were. Any member may send that.
 */
export function isLeave(current: GroupState, update: GroupState, member: string): boolean {
  if (!current.members.includes(member) || update.members.includes(member)) return false;
  const others = bridgesOf(current).filter((b) => b.account !== member);
  const next = bridgesOf(update);
  return (
    update.id === current.id &&
    update.title === current.title &&
    sameSet(
      update.members,
      current.members.filter((m) => m !== member),
    ) &&
    sameSet(
      update.admins,
      current.admins.filter((a) => a !== member),
    ) &&
    next.length === others.length &&
    others.every((b) => next.some((n) => JSON.stringify(n) === JSON.stringify(b)))
  );
}

/** What applying a group update changed. */
export interface GroupChange {
  group: GroupState;
  added: string[];
  removed: string[];
}

/**
 * Whether `from` may set a group to `update`: an admin of the current state
 * with a newer revision, or, for a group this device does not know yet, an
 * admin of the update that lists this account as a member. This account's
 * own devices (`from === self`) are trusted: they share the identity. Only
 * admins change the state, so only admins set its bridges; a state whose
 * bridges name a non-member, or one account twice, is refused from anyone.
 * A member who is not an admin may send one change only: the current state
 * without itself (leaving, see {@link isLeave}).
 * @returns the change, or null when the update must be refused
 */
export function applyGroupUpdate(
  current: GroupState | null,
  update: GroupState,
  from: string,
  self: string,
): GroupChange | null {
  if (!update.admins.every((a) => update.members.includes(a))) return null;
  if (!validBridges(update)) return null;
  if (current) {
    if (update.revision <= current.revision) return null;
    if (from !== self && !current.admins.includes(from) && !isLeave(current, update, from)) return null;
    return {
      group: update,
      added: update.members.filter((m) => !current.members.includes(m)),
      removed: current.members.filter((m) => !update.members.includes(m)),
    };
  }
  if (from !== self && !update.admins.includes(from)) return null;
  if (!update.members.includes(self)) return null;
  return { group: update, added: update.members, removed: [] };
}
