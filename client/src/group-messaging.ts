/**
 * Groups on the wire: admins create and change groups by sending the new
 * state to every member over pairwise sessions; messages go out as one
 * sender-key ciphertext inside one multi-recipient sealed-sender message,
 * after this device's sender key was distributed to member devices that
 * lack it. The server stores nothing about groups.
 */
import { randomUUID } from "node:crypto";
import type { MultiRecipientResponse } from "@zimchat/protocol";
import { localDevice, ownProfile, type ClientContext } from "./client-context.js";
import { encodeContent, type Content, type GroupState } from "./content.js";
import { ApiError, GroupError } from "./errors.js";
import { groupConversation, groupIdBytes } from "./groups.js";
import type { Names } from "./names.js";
import type { MessageBody, Outbox } from "./outbox.js";
import { newIdempotencyKey } from "./send-retry.js";
import type { Sessions } from "./sessions.js";
import type { DeviceAddress } from "./signal/index.js";

/** Member names a group change carries, at most (the content stays well under the server's size limit). */
const maxMemberNames = 200;

const addressKey = (a: DeviceAddress): string => `${a.uuid}.${a.deviceId}`;

export class GroupMessaging {
  constructor(
    private readonly ctx: ClientContext,
    private readonly sessions: Sessions,
    private readonly outbox: Outbox,
    private readonly names: Names,
  ) {}

  /** Creates a group (members are account ids) with this account as its admin and announces it. */
  async create(title: string, members: string[]): Promise<GroupState> {
    this.refuseRemote(members);
    const me = localDevice(this.ctx).uuid;
    const group: GroupState = {
      id: randomUUID(),
      title,
      members: [...new Set([me, ...members])],
      admins: [me],
      revision: 0,
    };
    await this.ctx.tasks.run(async () => this.ctx.groups.save(group));
    await this.announce(group, []);
    return group;
  }

  /** Adds members (account ids; admins only). */
  async addMembers(groupId: string, uuids: string[]): Promise<GroupState> {
    this.refuseRemote(uuids);
    const current = this.adminGroup(groupId);
    const next: GroupState = {
      ...current,
      members: [...new Set([...current.members, ...uuids])],
      revision: current.revision + 1,
    };
    await this.ctx.tasks.run(async () => this.ctx.groups.save(next));
    await this.announce(next, []);
    return next;
  }

  /**
   * Groups with members on other servers are not supported yet (a group message is one multi-recipient upload to
   * this homeserver, which fans it out to its own users only).
   * @throws GroupError naming the first member of another server
   */
  private refuseRemote(uuids: string[]): void {
    for (const uuid of uuids) {
      const server = this.ctx.servers.remoteServerOf(uuid);
      if (server !== null)
        throw new GroupError(
          `${this.names.nameOf(uuid)?.username ?? `${uuid}@${server}`} is a user of another server (${server}): groups with members on other servers are not supported yet`,
        );
    }
  }

  /** Removes members (account ids; admins only), tells them, and starts a new sender key. */
  async removeMembers(groupId: string, removed: Set<string>): Promise<GroupState> {
    const current = this.adminGroup(groupId);
    const next: GroupState = {
      ...current,
      members: current.members.filter((m) => !removed.has(m)),
      admins: current.admins.filter((a) => !removed.has(a)),
      revision: current.revision + 1,
    };
    if (!next.admins.length) throw new GroupError("a group needs at least one admin");
    await this.ctx.tasks.run(async () => {
      this.ctx.groups.save(next);
      this.ctx.groups.rotate(groupId);
    });
    await this.announce(
      next,
      [...removed].filter((u) => current.members.includes(u)),
    );
    return next;
  }

  private adminGroup(groupId: string): GroupState {
    const me = localDevice(this.ctx).uuid;
    const group = this.ctx.groups.get(groupId);
    if (!group || !group.members.includes(me)) throw new GroupError(`not a member of group ${groupId}`);
    if (!group.admins.includes(me)) throw new GroupError(`not an admin of group ${groupId}`);
    return group;
  }

  /** Sends a group's state to its members, to `alsoTell` (removed members) and to this account's other devices. */
  private async announce(group: GroupState, alsoTell: string[]): Promise<void> {
    const local = localDevice(this.ctx);
    // The usernames this device has verified (or looked up) for members, so members who never wrote to each other see
    // names.
    const memberNames = group.members.flatMap((uuid) => {
      const name = uuid === local.uuid ? null : this.names.nameOf(uuid);
      return name ? [{ uuid, username: name.username }] : [];
    });
    const content: Content = {
      v: 1,
      timestamp: Date.now(),
      groupUpdate: group,
      accessKey: local.accessKey,
      profile: ownProfile(this.ctx),
      ...(memberNames.length ? { memberNames: memberNames.slice(0, maxMemberNames) } : {}),
    };
    for (const uuid of [...group.members.filter((m) => m !== local.uuid), ...alsoTell])
      await this.outbox.sendContent(uuid, content);
    await this.outbox.syncToOwnDevices({ ...content, sync: {} });
  }

  /**
   * Sends a message to a group: one sender-key ciphertext in one multi-recipient sealed message, fanned out by the
   * server.
   */
  async send(groupId: string, body: MessageBody): Promise<{ timestamp: number; response: MultiRecipientResponse }> {
    const { tasks, groups, store, signal } = this.ctx;
    const me = localDevice(this.ctx).uuid;
    const group = groups.get(groupId);
    if (!group || !group.members.includes(me)) throw new GroupError(`not a member of group ${groupId}`);
    const certificate = await this.outbox.senderCertificate();
    if (!certificate)
      throw new GroupError("the homeserver issued no sender certificate; group messages need sealed sender");
    const recipients = group.members.filter((m) => m !== me);
    const content: Content = {
      v: 1,
      id: randomUUID(),
      timestamp: Date.now(),
      ...body,
      group: { id: groupId },
      profile: ownProfile(this.ctx),
    };
    const padded = encodeContent(content);
    let response: MultiRecipientResponse = { serverTimestamp: Date.now(), recipients: [] };
    // One key for the whole send: nothing is stored on a 409/410, so a corrected retry may reuse it.
    const idempotencyKey = newIdempotencyKey();
    if (recipients.length) {
      for (let attempt = 0; ; attempt++) {
        const addresses = await tasks.run(async () => {
          for (const uuid of recipients) await this.sessions.devicesOf(uuid);
          return recipients.flatMap((uuid) => store.sessionDevices(uuid).map((deviceId) => ({ uuid, deviceId })));
        });
        await this.distributeSenderKey(groupId, addresses);
        const message = await tasks.run(async () =>
          signal.groupSeal(padded, groups.distributionId(groupId), groupIdBytes(groupId), certificate, addresses),
        );
        try {
          response = await this.outbox.deliverMulti(
            recipients,
            Buffer.from(message).toString("base64"),
            idempotencyKey,
          );
          break;
        } catch (error) {
          if (!(error instanceof ApiError) || attempt >= 3 || !error.body.recipients) throw error;
          await tasks.run(async () => this.sessions.fixDevices(error.body.recipients ?? []));
        }
      }
    }
    await tasks.run(async () =>
      store.addMessage(this.outbox.outgoingRecord(randomUUID(), groupConversation(groupId), content)),
    );
    await this.outbox.syncToOwnDevices({ ...content, sync: {} });
    return { timestamp: content.timestamp, response };
  }

  /**
   * Sends this device's current sender key to member devices that do not hold it yet (pairwise, sealed when possible).
   */
  private async distributeSenderKey(groupId: string, addresses: DeviceAddress[]): Promise<void> {
    const { tasks, groups, store, signal } = this.ctx;
    const { skdm, needing } = await tasks.run(async () => {
      const holders = groups.keyHolders(groupId);
      const needing = [...new Set(addresses.filter((a) => !holders.has(addressKey(a))).map((a) => a.uuid))];
      if (!needing.length) return { skdm: null, needing };
      return { skdm: await signal.senderKeyDistribution(groups.distributionId(groupId)), needing };
    });
    if (!skdm) return;
    for (const uuid of needing) {
      await this.outbox.sendContent(uuid, {
        v: 1,
        timestamp: Date.now(),
        senderKey: { groupId, message: skdm },
        accessKey: localDevice(this.ctx).accessKey,
      });
      await tasks.run(async () =>
        groups.addKeyHolders(
          groupId,
          store.sessionDevices(uuid).map((deviceId) => addressKey({ uuid, deviceId })),
        ),
      );
    }
  }
}
