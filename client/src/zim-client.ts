import { EventEmitter } from "node:events";
import type { DeviceInfo, Envelope, MultiRecipientResponse, SendMessagesResponse } from "@zimchat/protocol";
import {
  downloadAttachment,
  uploadAttachment,
  type AttachmentInput,
  type AttachmentPointer,
  type StoredAttachmentPointer,
  type UploadOptions,
} from "./attachments.js";
import { BackgroundWork, createClientContext, credentials, localDevice, type ClientContext } from "./client-context.js";
import type { LinkOptions, RegisterOptions, ZimClientOptions } from "./client-options.js";
import { bridgeInfo, bridgesOf, type BridgeInfo } from "./bridges.js";
import { groupBridgeSchema, type Content, type GroupState } from "./content.js";
import { Devices, linkNewDevice, registerAccount } from "./devices.js";
import type { ZimClientEvents } from "./events.js";
import { GroupMessaging } from "./group-messaging.js";
import type { HttpApi } from "./http-api.js";
import { Inbox } from "./inbox.js";
import type { KeyTransparencyFailure } from "./key-transparency.js";
import { KeyUpkeep } from "./key-upkeep.js";
import { defaultKeyPolicy } from "./keys.js";
import { Names, type SenderName } from "./names.js";
import { Outbox, type MessageBody, type SendResult } from "./outbox.js";
import { RemoteDeliveryFailures } from "./remote-delivery.js";
import type { SafetyNumber } from "./safety-number.js";
import { Sessions } from "./sessions.js";
import type { DeviceStore, LocalDevice, StoredMessage } from "./store/device-store.js";
import { TrustChecks } from "./trust-checks.js";

export type {
  BridgesChangedEvent,
  DeviceListChangedEvent,
  GroupUpdatedEvent,
  MessageEvent,
  RemoteDeliveryFailedEvent,
  ServerBindingRefusedEvent,
  ZimClientEvents,
} from "./events.js";
export type { LinkOptions, RegisterOptions, ZimClientOptions } from "./client-options.js";

/**
 * An end-to-end encrypted ZimChat device: registration and linking,
 * sessions, sealed sender, groups with sender keys, attachments, safety
 * numbers. Every protocol operation is libsignal's (in `./signal/`); the
 * homeserver sees only ciphertext. This class wires the modules (outbox,
 * inbox, groups, devices, key upkeep, trust) and is the emitter of their events.
 *
 * @example
 * const alice = await ZimClient.register({ serverUrl, username: "alice", store: new SqliteDeviceStore("alice.db") });
 * alice.on("message", (m) => console.log(m.from, m.text));
 * await alice.connect();
 * await alice.sendText("bob", "Hey, did you see the news about the bond notes?");
 * await alice.sendText("tendai@news.example", "Hello from the club server"); // a user of another server
 */
export class ZimClient extends EventEmitter<ZimClientEvents> {
  readonly store: DeviceStore;
  readonly api: HttpApi;
  private readonly ctx: ClientContext;
  private readonly names: Names;
  private readonly outbox: Outbox;
  private readonly inbox: Inbox;
  private readonly groupMessaging: GroupMessaging;
  private readonly deviceList: Devices;
  private readonly keyUpkeep: KeyUpkeep;
  private readonly trust: TrustChecks;
  private readonly remoteFailures: RemoteDeliveryFailures;
  /** Receipts and key upkeep still running; `close` waits for them. */
  private readonly background: BackgroundWork;

  constructor(options: ZimClientOptions) {
    super();
    const { ctx, identityChanges, background } = createClientContext(options, this);
    this.ctx = ctx;
    this.store = ctx.store;
    this.api = ctx.api;
    this.background = background;
    this.names = new Names(this.ctx);
    const sessions = new Sessions(this.ctx);
    this.outbox = new Outbox(this.ctx, sessions, () => this.deviceList.refresh());
    this.deviceList = new Devices(this.ctx, this.outbox);
    this.inbox = new Inbox(this.ctx, this.outbox, identityChanges, this.names);
    this.groupMessaging = new GroupMessaging(this.ctx, sessions, this.outbox, this.names);
    if (options.displayName !== undefined) this.setDisplayName(options.displayName);
    this.keyUpkeep = new KeyUpkeep(this.ctx, { ...defaultKeyPolicy, ...options.keyPolicy });
    this.trust = new TrustChecks(this.ctx, sessions, this.outbox);
    this.remoteFailures = new RemoteDeliveryFailures(this.ctx, sessions, this.outbox, (groupId, uuid, content) =>
      this.groupMessaging.resendTo(groupId, uuid, content),
    );
  }

  /**
   * Creates an account: a new identity key pair, registration id, device
   * password, access key, signed pre-key, Kyber last-resort key, and a first
   * batch of one-time keys, all generated here and kept in `store`. Pins the
   * server's trust root and publishes the access key's hash.
   */
  static async register(options: RegisterOptions): Promise<ZimClient> {
    await registerAccount(options);
    const client = new ZimClient(options);
    await client.api.setAttributes({
      accessKey: client.local.accessKey,
      unrestrictedAccess: options.unrestrictedAccess ?? false,
    });
    await client.maintainKeys();
    return client;
  }

  /**
   * Links this store as a new device of an existing account: asks the
   * server for a linking code, hands the link URI to `onLinkCode` (show it
   * as text and QR for the primary device to approve), waits for the
   * primary's sealed provisioning message, opens it with an ephemeral key
   * that never leaves this process, then registers this device's own keys,
   * signed by the account identity key it received.
   */
  static async link(options: LinkOptions): Promise<ZimClient> {
    await linkNewDevice(options);
    const client = new ZimClient(options);
    await client.maintainKeys();
    await client.deviceList.refresh();
    return client;
  }

  /**
   * Approves a link request shown by a new device (its URI, typed or
   * scanned): seals the account identity key pair, access key and pinned
   * trust root to the new device's ephemeral key and attaches it to the
   * linking code. Only the primary device (device 1) may.
   */
  async approveLink(uri: string): Promise<void> {
    return this.deviceList.approveLink(uri);
  }

  /** This account's devices, as the server lists them (also updates what sync messages go to). */
  async devices(): Promise<DeviceInfo[]> {
    return this.deviceList.refresh();
  }

  /** Unlinks a device of this account (the primary may unlink any other; a device may unlink itself). */
  async unlinkDevice(deviceId: number): Promise<void> {
    return this.deviceList.unlink(deviceId);
  }

  /**
   * A reinstall that kept its credentials: a new identity key pair,
   * registration id and signed keys replace the old ones on the server
   * (which drops other devices, one-time keys and queued envelopes), and
   * every local session is forgotten. Contacts see the safety number change.
   */
  async resetIdentity(): Promise<void> {
    await this.deviceList.resetIdentity();
    await this.maintainKeys();
  }

  /** This device's account id, device id and username. */
  get local(): LocalDevice {
    return localDevice(this.ctx);
  }

  /**
   * Connects the socket, drains the stored queue (decrypting and
   * acknowledging each envelope) and resolves at `queue-empty`.
   */
  async connect(): Promise<void> {
    const { connections, inBackground } = this.ctx;
    if (connections.authenticated) return;
    const { uuid, deviceId, password } = this.local;
    const socket = connections.open({ username: `${uuid}.${deviceId}`, password });
    socket.on("envelopes", (batch, received) => inBackground(this.processEnvelopes(batch).then(() => received?.())));
    socket.on("queue-empty", () => this.emit("queueEmpty"));
    socket.on("connect", () => this.emit("connectionChanged", { connected: true }));
    socket.on("disconnect", () => this.emit("connectionChanged", { connected: false }));
    socket.on("closing", (reason) => this.emit("closedByServer", { reason }));
    socket.on("devices-changed", () => inBackground(this.deviceList.refresh()));
    socket.on("keys-draining", () => inBackground(this.maintainKeys()));
    // Acknowledged once handled: a failed re-send (no answer) leaves it for the next connection.
    socket.on("remote-delivery-failed", (failure, received) =>
      inBackground(this.remoteFailures.handle(failure).then(() => received?.())),
    );
    const drained = new Promise<void>((resolve, reject) => {
      socket.once("queue-empty", () => resolve());
      socket.once("connect_error", (error) => reject(error));
    });
    try {
      await drained;
    } catch (error) {
      // Refused (wrong credentials, server down): stop the client's reconnection attempts.
      this.disconnect();
      throw error;
    }
    // Before any send: sent transcripts go to the devices this lists.
    await this.deviceList.refresh();
    inBackground(this.maintainKeys());
    this.trust.checkOwnKey();
  }

  /** Whether the authenticated socket is connected now. */
  get connected(): boolean {
    return this.ctx.connections.connected;
  }

  /** Closes the sockets. */
  disconnect(): void {
    this.ctx.connections.close();
  }

  /** Sends held receipts, lets background work (receipts, key upkeep) finish, then closes the sockets and the store. */
  async close(): Promise<void> {
    // Take no new envelopes (unacknowledged ones come back next time), finish what is running.
    this.ctx.connections.authenticated?.off("envelopes");
    this.inbox.flushReceipts();
    await this.background.settle();
    this.disconnect();
    await this.ctx.tasks.idle();
    this.store.close();
  }

  /**
   * The account id for a username, a user of another server written
   * `name@server` (looked up through this homeserver), or `uuid@server`
   * (cached), or the argument if it is already a UUID. The answer binds the
   * account to that server for good.
   * @throws FederationUnavailableError for `name@server` when this homeserver does not federate
   * @throws ServerBindingError when the account is bound to another server (a server claiming someone else's user)
   */
  async resolve(user: string): Promise<string> {
    return this.names.resolve(user);
  }

  /**
   * The verified username (and claimed display name) of an account, if this
   * device has verified it; else null. A user of another server's username
   * is `name@server`.
   */
  nameOf(uuid: string): SenderName | null {
    return this.names.nameOf(uuid);
  }

  /**
   * The other server an account belongs to (federation), or null for this
   * homeserver's users (and accounts this device never met).
   */
  serverOf(uuid: string): string | null {
    return this.ctx.servers.remoteServerOf(uuid);
  }

  /**
   * How to show an account: its verified username (`name@server` for
   * another server's user), else its account id (`uuid@server` for another
   * server's user).
   */
  addressOf(uuid: string): string {
    const name = this.names.nameOf(uuid);
    if (name) return name.username;
    const server = this.serverOf(uuid);
    return server === null ? uuid : `${uuid}@${server}`;
  }

  /**
   * This homeserver's federation name (what other servers' users write after
   * the `@`), from its server document; null when it does not federate.
   */
  async homeServerName(): Promise<string | null> {
    return this.ctx.home.name();
  }

  /** The homeserver's federation name as this device last learned it (no network), or null. */
  knownHomeServerName(): string | null {
    return this.ctx.home.cachedName();
  }

  /** Sets (or with null, clears) the display name this device's messages carry, encrypted, beside the username. */
  setDisplayName(displayName: string | null): void {
    if (displayName !== null && (displayName.length < 1 || displayName.length > 64))
      throw new RangeError("a display name has 1 to 64 characters");
    this.store.setValue("displayName", displayName ?? "");
  }

  /**
   * Encrypts a text for every device of the recipient (sealed when their
   * access key is known) and for this account's other devices (a sent
   * transcript), and sends it. Refused with {@link UntrustedIdentityError}
   * when the recipient's key changed after it was verified. Never sends
   * anything unencrypted. `to` may be `name@server`, a user of another
   * homeserver: then `queued` says their server did not answer and this
   * homeserver holds the message (a `remoteDeliveryFailed` event follows if
   * it gives up).
   */
  async sendText(
    to: string,
    text: string,
  ): Promise<{ timestamp: number; envelopes: SendMessagesResponse["envelopes"]; queued?: boolean }> {
    return this.outbox.sendDirect(await this.resolve(to), { text });
  }

  /**
   * Encrypts a file with a fresh key, pads it to a size bucket, uploads the
   * ciphertext, and sends its pointer (id, key, digest) inside an
   * end-to-end encrypted message to a user ({@link sendGroupAttachment} for
   * a group).
   */
  async sendAttachment(
    to: string,
    source: AttachmentInput,
    options: UploadOptions & { caption?: string } = {},
  ): Promise<{ timestamp: number; attachment: AttachmentPointer }> {
    const attachment = await this.uploadAttachment(source, options);
    const { timestamp } = await this.outbox.sendDirect(await this.resolve(to), {
      text: options.caption ?? "",
      attachment,
    });
    return { timestamp, attachment };
  }

  /**
   * Downloads an attachment, checks its digest, decrypts it: returns the
   * bytes, or writes them to `destination` (only once they checked out).
   * A received pointer (a message event's or a stored message's) names the
   * server that stores the blob when it is another homeserver, the sender's:
   * it is fetched through this homeserver from there (federation).
   * @throws AttachmentError when the ciphertext was tampered with
   * @throws ApiError `not_found` once it expired; for another server's also `peer_unavailable`, `peer_not_allowed`
   */
  async downloadAttachment(pointer: StoredAttachmentPointer): Promise<Buffer>;
  async downloadAttachment(pointer: StoredAttachmentPointer, destination: string): Promise<void>;
  async downloadAttachment(pointer: StoredAttachmentPointer, destination?: string): Promise<Buffer | void> {
    const { serverUrl } = this.local;
    if (destination === undefined) return downloadAttachment(serverUrl, credentials(this.ctx), pointer);
    return downloadAttachment(serverUrl, credentials(this.ctx), pointer, destination);
  }

  /** Encrypts (fresh key, padded to a size bucket) and uploads a file: a path, bytes or a stream. */
  private async uploadAttachment(
    source: AttachmentInput,
    { contentType, fileName }: UploadOptions,
  ): Promise<AttachmentPointer> {
    return uploadAttachment(this.local.serverUrl, credentials(this.ctx), source, {
      ...(contentType ? { contentType } : {}),
      ...(fileName ? { fileName } : {}),
    });
  }

  /**
   * Encrypts and sends content to every device of `uuid`: the outbox's
   * lower-level send, for subclasses and tests that craft content.
   * @internal
   */
  protected async sendContent(uuid: string, content: Content): Promise<SendResult> {
    return this.outbox.sendContent(uuid, content);
  }

  /** The stored conversation with a user (or `group:<id>`), oldest first. */
  async conversation(user: string, limit?: number): Promise<StoredMessage[]> {
    if (user.startsWith("group:")) return this.store.messages(user, limit);
    return this.store.messages(await this.resolve(user), limit);
  }

  /** The safety number with a user (their key as this device knows it, fetching it on first contact). */
  async safetyNumber(user: string): Promise<SafetyNumber> {
    return this.trust.safetyNumber(await this.resolve(user), user);
  }

  /**
   * This account's half of every safety number with it: 30 digits (six groups
   * of five) that libsignal derives from the account id and identity key
   * alone. A safety number that does not contain them is not with this account.
   */
  identityFingerprint(): string {
    return this.trust.identityFingerprint();
  }

  /**
   * Marks a user verified when `entered` (60 digits or a scanned payload)
   * matches the safety number; this also lifts a block after a key change.
   * @returns whether it matched
   */
  async verify(user: string, entered: string): Promise<boolean> {
    return this.trust.verify(await this.resolve(user), entered);
  }

  /** Accepts a changed key without verifying it: sending is allowed again, the contact is unverified. */
  async acceptIdentityChange(user: string): Promise<void> {
    return this.trust.acceptIdentityChange(await this.resolve(user));
  }

  /**
   * Pins the trust root the server presents now, after a `trustRootChanged`
   * (check `expectedFingerprint` with the server's admin, out of band: a
   * server that swaps its trust root can mint certificates for anyone).
   * Sealed sending resumes. `server`: another server's trust root (the
   * event's `server`, federation), whose users' sealed messages are checked
   * against it from now on; absent: the homeserver's.
   * @throws TrustRootMismatchError when `expectedFingerprint` is given and differs
   * @returns the fingerprint now pinned
   * @example
   * client.on("trustRootChanged", async ({ presented, server }) => {
   *   if (await askUser(`new trust root ${presented}${server ? ` for ${server}` : ""}?`))
   *     await client.acceptTrustRoot(presented, server);
   * });
   */
  async acceptTrustRoot(expectedFingerprint?: string, server?: string): Promise<string> {
    return this.trust.acceptTrustRoot(expectedFingerprint, this.ctx.servers.normalize(server));
  }

  /**
   * While the server's trust root differs from the pinned one, send
   * authenticated (the server learns the sender of each message) instead
   * of holding sealed sends. Kept until `acceptTrustRoot`. `server`: for
   * another server's users only (federation), while that server's root differs.
   */
  async allowUnsealedSending(server?: string): Promise<void> {
    return this.trust.allowUnsealedSending(this.ctx.servers.normalize(server));
  }

  /** Whether a user is verified, and whether sending to them is blocked. */
  async trustState(user: string): Promise<{ verified: boolean; blocked: boolean } | null> {
    return this.trust.trustState(await this.resolve(user));
  }

  /**
   * Checks a user's identity key (as this device knows it, fetched on first
   * contact) against the server's key-transparency log now, unless that key
   * was verified before. A failure is also emitted as `keyTransparencyFailure`.
   * @returns null when the key is in the log (or the server offers no log), else the failure
   */
  async checkKeyTransparency(user: string): Promise<KeyTransparencyFailure | null> {
    return this.trust.checkKeyTransparency(await this.resolve(user), user);
  }

  /**
   * Keeps pre-keys healthy: refills one-time keys when the server holds
   * fewer than `refillBelow` (or, while the server says they are being
   * drained, fewer than a full batch: `preKeysDraining`), rotates the signed
   * and last-resort keys when due, and drops replaced ones after the grace period.
   */
  async maintainKeys(now = Date.now()): Promise<void> {
    return this.keyUpkeep.maintain(now);
  }

  /**
   * Fetches the stored queue over REST and processes it (for a device that
   * does not keep a socket open). @returns how many envelopes were processed
   */
  async poll(): Promise<number> {
    return this.inbox.poll();
  }

  /**
   * Decrypts envelopes in the order given, each in its own transaction,
   * emits their events, then acknowledges them. The socket calls this; so
   * does {@link poll}, and an app with its own transport may too.
   */
  async processEnvelopes(batch: Envelope[]): Promise<void> {
    return this.inbox.processEnvelopes(batch);
  }

  // ---------------------------------------------------------------- groups

  /** Groups this device knows, including ones this account has left. */
  listGroups(): GroupState[] {
    return this.ctx.groups.list();
  }

  /** A group's state, or null. */
  group(groupId: string): GroupState | null {
    return this.ctx.groups.get(groupId);
  }

  /** A group's members with their verified names where this device knows them (else by account id only), or null. */
  groupMembers(groupId: string): { uuid: string; name: SenderName | null; admin: boolean }[] | null {
    const group = this.ctx.groups.get(groupId);
    return (
      group &&
      group.members.map((uuid) => ({ uuid, name: this.names.nameOf(uuid), admin: group.admins.includes(uuid) }))
    );
  }

  /**
   * Creates a group with this account as its admin and sends its state to
   * every member (and this account's other devices) over pairwise sessions.
   * The server stores nothing about it. Members on other servers are refused
   * with a {@link GroupError} (not supported yet).
   */
  async createGroup(title: string, members: string[]): Promise<GroupState> {
    return this.groupMessaging.create(title, await this.resolveAll(members));
  }

  /** Adds members (admins only). */
  async addGroupMembers(groupId: string, users: string[]): Promise<GroupState> {
    return this.groupMessaging.addMembers(groupId, await this.resolveAll(users));
  }

  /**
   * Removes members (admins only). The removed members are told, every
   * member starts a new sender key, so the removed cannot read what follows.
   */
  async removeGroupMembers(groupId: string, users: string[]): Promise<GroupState> {
    return this.groupMessaging.removeMembers(groupId, new Set(await this.resolveAll(users)));
  }

  /**
   * Leaves a group (any member): the other members and this account's other
   * devices get the group without this account; the members start new sender
   * keys, so this device cannot read what follows. The group stays in
   * {@link listGroups}, without this account among its members.
   * @throws GroupError when this account is not a member, or is the group's only admin (or only member)
   * @example
   * await client.leaveGroup(groupId);
   */
  async leaveGroup(groupId: string): Promise<GroupState> {
    return this.groupMessaging.leave(groupId);
  }

  /**
   * Bridges a group (admins only): the bot account `bot` (a username, or
   * `name@server`, resolved as {@link addGroupMembers} resolves users)
   * decrypts the group's messages and relays them in plaintext to `target`
   * on `network` (an IRC channel like `#club`, an XMPP room), with
   * attachments when `attachments` is true. The bot is added as a member if
   * it is not one, and the bridge recorded in the group state (replacing the
   * bot's earlier bridge), in one group change: every member's client then
   * shows the disclosure (`bridgeBanner`) and emits `bridgesChanged`.
   * @throws GroupError when this account is not an admin, or the group has 8 bridges already
   * @throws RangeError when `network` or `target` (1 to 256 characters) is not valid
   * @example
   * await admin.bridgeGroup(groupId, { bot: "ircbridge", network: "irc", target: "#club" });
   */
  async bridgeGroup(
    groupId: string,
    bridge: { bot: string; network: "irc" | "xmpp"; target: string; attachments?: boolean },
  ): Promise<GroupState> {
    const parsed = groupBridgeSchema.omit({ account: true }).safeParse({
      network: bridge.network,
      target: bridge.target,
      ...(bridge.attachments !== undefined ? { attachments: bridge.attachments } : {}),
    });
    if (!parsed.success)
      throw new RangeError("a bridge's network is irc or xmpp, and its target has 1 to 256 characters");
    const account = await this.resolve(bridge.bot);
    return this.groupMessaging.bridge(groupId, { account, ...parsed.data });
  }

  /**
   * Removes a group's bridge (admins only) and removes its bot from the
   * members, so it can no longer decrypt what follows (every member starts
   * a new sender key, as for {@link removeGroupMembers}).
   * @throws GroupError when this account is not an admin, or `bot` is not a bridge of the group
   */
  async unbridgeGroup(groupId: string, bot: string): Promise<GroupState> {
    return this.groupMessaging.unbridge(groupId, await this.resolve(bot));
  }

  /**
   * A group's bridges, each with the bot's verified name where this device
   * knows it (as {@link groupMembers} names members); empty for a group
   * without bridges or unknown to this device. Show `bridgeBanner`
   * for each.
   */
  groupBridges(groupId: string): BridgeInfo[] {
    return bridgesOf(this.ctx.groups.get(groupId)).map((b) => bridgeInfo(b, (uuid) => this.names.nameOf(uuid)));
  }

  /**
   * Sends a text to a group: one sender-key ciphertext (libsignal
   * `groupEncrypt`) inside one multi-recipient sealed-sender message for
   * every member device, uploaded once; the server fans it out.
   */
  async sendGroupText(groupId: string, text: string): Promise<{ timestamp: number; response: MultiRecipientResponse }> {
    return this.groupMessaging.send(groupId, { text });
  }

  /** Sends an attachment to a group. */
  async sendGroupAttachment(
    groupId: string,
    source: AttachmentInput,
    options: UploadOptions & { caption?: string } = {},
  ): Promise<{ timestamp: number; attachment: AttachmentPointer }> {
    const attachment = await this.uploadAttachment(source, options);
    const body: MessageBody = { text: options.caption ?? "", attachment };
    const { timestamp } = await this.groupMessaging.send(groupId, body);
    return { timestamp, attachment };
  }

  private async resolveAll(users: string[]): Promise<string[]> {
    return Promise.all(users.map((u) => this.resolve(u)));
  }
}
