/**
 * Groups on the wire: admins create and change groups by sending the new
 * state to every member over pairwise sessions; messages go out as one
 * sender-key ciphertext inside one multi-recipient sealed-sender message,
 * after this device's sender key was distributed to member devices that
 * lack it. The server stores nothing about groups.
 *
 * Members on other servers (federation) get group changes and sender keys
 * through the federated 1:1 path, and group messages in the same single
 * upload (`remoteRecipients`): this homeserver relays each remote member's
 * own sealed message to its server and answers for each in `remote[]`. A
 * remote member's device change (409/410) or refused access key (401) is
 * repaired and the message re-sent to that member alone; other refusals
 * stay in the answer's `remote[]`.
 */
import { randomUUID } from "node:crypto";
import { errorBodySchema, recipientMismatchSchema, type MultiRecipientResponse } from "@zimchat/protocol";
import { localDevice, ownProfile, type ClientContext } from "./client-context.js";
import { bridgesChange, bridgesOf, diffBridges, validBridges } from "./bridges.js";
import { encodeContent, maxGroupBridges, type Content, type GroupBridge, type GroupState } from "./content.js";
import { ApiError, GroupError } from "./errors.js";
import { parseAddress } from "./federation.js";
import { groupConversation, groupIdBytes, inOwnView } from "./groups.js";
import type { Names } from "./names.js";
import type { MessageBody, Outbox } from "./outbox.js";
import { newIdempotencyKey } from "./send-retry.js";
import type { Sessions } from "./sessions.js";
import type { DeviceAddress, SenderCertificate } from "./signal/index.js";

/** A remote member's refusal that a repair can answer: a device change (409/410) or a changed access key (401). */
function repairable(r: NonNullable<MultiRecipientResponse["remote"]>[number]): boolean {
  return r.status === 401 || r.error?.code === "mismatched_devices" || r.error?.code === "stale_devices";
}

/** Member names a group change carries, at most (the content stays well under the server's size limit). */
const maxMemberNames = 200;

const addressKey = (a: DeviceAddress): string => `${a.uuid}.${a.deviceId}`;

/** A group state with these bridges (without the field when there are none, as before bridges existed). */
function withBridges(group: GroupState, bridges: GroupBridge[]): GroupState {
  const { bridges: _, ...rest } = group;
  return bridges.length ? { ...rest, bridges } : rest;
}

export class GroupMessaging {
  constructor(
    private readonly ctx: ClientContext,
    private readonly sessions: Sessions,
    private readonly outbox: Outbox,
    private readonly names: Names,
  ) {}

  /** Creates a group (members are account ids) with this account as its admin and announces it. */
  async create(title: string, members: string[]): Promise<GroupState> {
    const me = localDevice(this.ctx).uuid;
    const group = inOwnView(
      { id: randomUUID(), title, members: [...new Set([me, ...members])], admins: [me], revision: 0 },
      this.ctx.servers,
    );
    await this.ctx.tasks.run(async () => this.ctx.groups.save(group));
    await this.announce(group, []);
    return group;
  }

  /** Adds members (account ids; admins only). */
  async addMembers(groupId: string, uuids: string[]): Promise<GroupState> {
    return this.change(groupId, (current) => ({ ...current, members: [...new Set([...current.members, ...uuids])] }));
  }

  /**
   * Removes members (account ids; admins only), tells them, and starts a new sender key. A removed member's bridge
   * goes with it.
   */
  async removeMembers(groupId: string, removed: Set<string>): Promise<GroupState> {
    return this.change(
      groupId,
      (current) =>
        withBridges(
          {
            ...current,
            members: current.members.filter((m) => !removed.has(m)),
            admins: current.admins.filter((a) => !removed.has(a)),
          },
          bridgesOf(current).filter((b) => !removed.has(b.account)),
        ),
      removed,
    );
  }

  /**
   * Leaves a group (any member): the group without this account goes to the other members (who start new sender
   * keys, so this device cannot read what follows) and to this account's other devices. The only admin cannot leave
   * (nobody could change the group after), nor the only member.
   * @throws GroupError when this account is not a member, or is the group's only admin or member
   */
  async leave(groupId: string): Promise<GroupState> {
    const me = localDevice(this.ctx).uuid;
    const current = this.ctx.groups.get(groupId);
    if (!current || !current.members.includes(me)) throw new GroupError(`not a member of group ${groupId}`);
    const admins = current.admins.filter((a) => a !== me);
    const members = current.members.filter((m) => m !== me);
    if (!members.length) throw new GroupError(`you are the only member of ${current.title}`);
    if (!admins.length)
      throw new GroupError(
        `the only admin of ${current.title} cannot leave while others remain: remove the other members first`,
      );
    const next = inOwnView(
      withBridges(
        { ...current, members, admins, revision: current.revision + 1 },
        bridgesOf(current).filter((b) => b.account !== me),
      ),
      this.ctx.servers,
    );
    await this.ctx.tasks.run(async () => this.ctx.groups.save(next));
    await this.announce(next, []);
    return next;
  }

  /**
   * Sets a group's bridge for `bridge.account` (admins only), replacing that account's earlier one, and adds the bot
   * as a member if it is not one (its devices get the group's sender keys like any member's): one change.
   */
  async bridge(groupId: string, bridge: GroupBridge): Promise<GroupState> {
    const current = this.adminGroup(groupId);
    const existing = bridgesOf(current).find((b) => b.account === bridge.account);
    // Nothing to change: no new revision for members to apply.
    if (existing && diffBridges([existing], [bridge]).added.length === 0) return current;
    return this.change(groupId, (current) => {
      const others = bridgesOf(current).filter((b) => b.account !== bridge.account);
      if (others.length >= maxGroupBridges) throw new GroupError(`a group has at most ${maxGroupBridges} bridges`);
      return withBridges({ ...current, members: [...new Set([...current.members, bridge.account])] }, [
        ...others,
        bridge,
      ]);
    });
  }

  /**
   * Removes a group's bridge and its bot from the members (admins only): a bot that stayed a member would still
   * decrypt, without a banner. Every member starts a new sender key, as for any removal.
   * @throws GroupError when `account` is not a bridge of the group
   */
  async unbridge(groupId: string, account: string): Promise<GroupState> {
    const current = this.adminGroup(groupId);
    if (!bridgesOf(current).some((b) => b.account === account))
      throw new GroupError(`${account} is not a bridge of group ${groupId}`);
    return this.removeMembers(groupId, new Set([account]));
  }

  /**
   * One change of a group by this device (an admin): the next revision, saved, reported (`bridgesChanged` when its
   * bridges changed) and announced to the members, and to `removed` (who also make every member's sender key new).
   */
  private async change(
    groupId: string,
    edit: (current: GroupState) => GroupState,
    removed: Set<string> = new Set(),
  ): Promise<GroupState> {
    const current = this.adminGroup(groupId);
    const next = inOwnView({ ...edit(current), revision: current.revision + 1 }, this.ctx.servers);
    if (!next.admins.length) throw new GroupError("a group needs at least one admin");
    // Members refuse a state whose bridges name a non-member or an account twice: never send one.
    if (!validBridges(next)) throw new GroupError("a group's bridges must be members, one bridge per account");
    await this.ctx.tasks.run(async () => {
      this.ctx.groups.save(next);
      if (removed.size) this.ctx.groups.rotate(groupId);
    });
    const bridges = bridgesChange(current, next, (uuid) => this.names.nameOf(uuid));
    if (bridges) this.ctx.events.emit("bridgesChanged", bridges);
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
      // A member of another server is known here as `name@server`: the claim is the bare username, which each
      // receiver checks on the server it binds that member to (see memberServers).
      return name ? [{ uuid, username: parseAddress(name.username).name }] : [];
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
    const { tasks, groups, store, sealed } = this.ctx;
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
    const response: MultiRecipientResponse = { serverTimestamp: Date.now(), recipients: [] };
    // Everyone at first; then the remote members whose server refused them (repaired), each round to them alone.
    let pending = recipients;
    for (let round = 0; pending.length; round++) {
      const answer = await this.sendRound(groupId, padded, certificate, pending);
      response.serverTimestamp = answer.serverTimestamp;
      response.recipients.push(...answer.recipients);
      const settled = (answer.remote ?? []).filter((r) => r.status === 200 || round >= 3 || !repairable(r));
      // Relays this homeserver queued (their server did not answer): kept for a re-send after `remote-delivery-failed`.
      const queued = settled.filter((r) => r.status === 200 && r.queued && r.id);
      if (queued.length)
        await tasks.run(async () => {
          for (const r of queued)
            this.outbox.pendingRemote.remember(r.id!, r.uuid, r.server, content, Date.now(), groupId);
        });
      if (settled.length) (response.remote ??= []).push(...settled);
      const refused = (answer.remote ?? []).filter((r) => !settled.includes(r));
      await tasks.run(async () => {
        for (const r of refused) {
          if (r.status === 401) sealed.forgetAccessKey(r.uuid);
          else {
            const mismatch = recipientMismatchSchema.safeParse({ ...r.error, uuid: r.uuid });
            await this.sessions.fixDevices([mismatch.success ? mismatch.data : { uuid: r.uuid }]);
            groups.forgetKeyHolders(groupId, r.uuid);
          }
        }
      });
      pending = refused.map((r) => r.uuid);
    }
    await tasks.run(async () =>
      store.addMessage(this.outbox.outgoingRecord(randomUUID(), groupConversation(groupId), content)),
    );
    await this.outbox.syncToOwnDevices({ ...content, sync: {} });
    return { timestamp: content.timestamp, response };
  }

  /**
   * Re-sends a group message to one member (another server's, after `remote-delivery-failed` and a repair), if they
   * are still a member and this account still is one.
   * @throws GroupError when either is no longer a member; ApiError when the re-send is refused
   */
  async resendTo(groupId: string, uuid: string, content: Content): Promise<void> {
    const group = this.ctx.groups.get(groupId);
    const me = localDevice(this.ctx).uuid;
    if (!group?.members.includes(me) || !group.members.includes(uuid))
      throw new GroupError(`${uuid} is no longer in group ${groupId}`);
    const certificate = await this.outbox.senderCertificate();
    if (!certificate) throw new GroupError("the homeserver issued no sender certificate");
    const { tasks, groups } = this.ctx;
    // Their devices were just repaired: a device id may be a new install, which needs this device's sender key.
    await tasks.run(async () => groups.forgetKeyHolders(groupId, uuid));
    const answer = await this.sendRound(groupId, encodeContent(content), certificate, [uuid]);
    const result = answer.remote?.find((r) => r.uuid === uuid);
    if (result && result.status !== 200) {
      const body = errorBodySchema.safeParse(result.error);
      throw new ApiError(
        result.status,
        body.success ? body.data : { code: "internal", message: `${result.server} refused (${result.status})` },
      );
    }
    if (result?.queued && result.id) {
      const { id, server } = result;
      await tasks.run(async () => this.outbox.pendingRemote.remember(id, uuid, server, content, Date.now(), groupId));
    }
  }

  /**
   * One multi-recipient upload of a group message to `recipients` (remote ones named in `remoteRecipients`), after
   * this device's sender key reached their devices; retried after this homeserver's own 409/410 (which refuse the whole
   * upload: nothing was stored or relayed, so the corrected retry reuses the key).
   */
  private async sendRound(
    groupId: string,
    padded: Uint8Array<ArrayBuffer>,
    certificate: SenderCertificate,
    recipients: string[],
  ): Promise<MultiRecipientResponse> {
    const { tasks, groups, store, signal, servers } = this.ctx;
    const remoteRecipients = recipients.flatMap((uuid) => {
      const server = servers.remoteServerOf(uuid);
      return server === null ? [] : [{ uuid, server }];
    });
    const idempotencyKey = newIdempotencyKey();
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
        return await this.outbox.deliverMulti(
          recipients,
          Buffer.from(message).toString("base64"),
          idempotencyKey,
          remoteRecipients,
        );
      } catch (error) {
        if (!(error instanceof ApiError) || attempt >= 3 || !error.body.recipients) throw error;
        const mismatches = error.body.recipients;
        await tasks.run(async () => {
          await this.sessions.fixDevices(mismatches);
          for (const m of mismatches) groups.forgetKeyHolders(groupId, m.uuid);
        });
      }
    }
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
