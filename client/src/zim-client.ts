import { EventEmitter } from "node:events";
import { randomBytes, randomInt, randomUUID } from "node:crypto";
import {
  CiphertextMessageType,
  ContentHint,
  ErrorCode,
  KEMPublicKey,
  LibSignalErrorBase,
  PreKeyBundle,
  PreKeySignalMessage,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderKeyDistributionMessage,
  SignalMessage,
  UnidentifiedSenderMessageContent,
  groupDecrypt,
  groupEncrypt,
  processPreKeyBundle,
  processSenderKeyDistributionMessage,
  sealedSenderDecryptToUsmc,
  sealedSenderEncrypt,
  sealedSenderMultiRecipientEncrypt,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
  type CiphertextMessage,
  type SenderCertificate,
} from "@signalapp/libsignal-client";
import { io, type Socket } from "socket.io-client";
import type {
  ClientToServerEvents,
  DeviceInfo,
  DisconnectReason,
  Envelope,
  MultiRecipientResponse,
  OutgoingMessage,
  PreKeyBundleResponse,
  RecipientMismatch,
  SealedClientToServerEvents,
  SendMessagesResponse,
  ServerToClientEvents,
  SocketResult,
} from "@zimchat/protocol";
import { missingCase } from "@zimchat/protocol";
import { downloadAttachment, uploadAttachment, type AttachmentInput, type AttachmentPointer, type UploadOptions } from "./attachments.js";
import { decodeContent, encodeContent, type Content, type GroupState } from "./content.js";
import { ApiError, apiError, BadDeviceKeysError, DecryptionFailureReason, GroupError, SealedSendingPausedError, TrustRootMismatchError, UntrustedIdentityError } from "./errors.js";
import { applyGroupUpdate, groupConversation, groupIdBytes, GroupStore } from "./groups.js";
import { HttpApi } from "./http-api.js";
import { IdentityChangeNotifier, refusedIdentityChange } from "./identity-changes.js";
import { KeyTransparencyChecker, type KeyTransparencyFailure, type KeyTransparencyOptions } from "./key-transparency.js";
import { defaultKeyPolicy, newKyberPreKey, newOneTimeKeys, newSignedPreKey, pruneReplacedKeys, type KeyPolicy } from "./keys.js";
import { linkUri, openProvisioning, parseLinkUri, sealProvisioning } from "./linking.js";
import { MessageDedup } from "./message-dedup.js";
import { matchesSafetyNumber, safetyNumber, type SafetyNumber } from "./safety-number.js";
import { SealedSenderState } from "./sealed.js";
import { defaultSendRetryPolicy, newIdempotencyKey, withSendRetry, type SendRetryPolicy } from "./send-retry.js";
import type { DeviceStore, LocalDevice, StoredMessage } from "./store/device-store.js";
import { signalStores, type SignalStores } from "./store/signal-stores.js";
import { trustOnFirstUse, type TrustPolicy } from "./trust.js";
import { StoreQueue } from "./task-queue.js";
import { checkServerUrl } from "./server-url.js";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const bytes = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;
const addressKey = (uuid: string, deviceId: number): string => `${uuid}.${deviceId}`;

/** A decrypted message (text, attachment, or both), received or sent by this account's other device. */
export interface MessageEvent {
  envelopeId: string;
  /** The author's account id (this account's own id for a sent transcript). */
  from: string;
  fromDevice: number;
  /** The conversation: the other person's account id, or `group:<id>`. */
  conversation: string;
  /** The group id, for group messages. */
  group?: string;
  text: string;
  attachment?: AttachmentPointer;
  /** The sender's timestamp. */
  timestamp: number;
  /** The envelope came sealed: the server did not know who sent it. */
  sealed: boolean;
  /** Sent by this account's other device (a sync transcript), not received. */
  outgoing: boolean;
}

/** A group was created, changed, or this account was removed from it. */
export interface GroupUpdatedEvent {
  group: GroupState;
  /** Who changed it. */
  by: string;
  added: string[];
  removed: string[];
  /** This account is no longer a member. */
  left: boolean;
}

/** This account's device list changed ("a new device was linked to your account"). */
export interface DeviceListChangedEvent {
  devices: DeviceInfo[];
  added: number[];
  removed: number[];
}

/** What processing one envelope produced. */
type ReceiveResult =
  | { kind: "message"; message: MessageEvent }
  | { kind: "receipt"; receipt: ZimClientEvents["deliveryReceipt"][0] }
  | { kind: "group"; update: GroupUpdatedEvent }
  | { kind: "failed"; failure: ZimClientEvents["decryptionFailed"][0] }
  | { kind: "skipped" };

/** The events a {@link ZimClient} emits. */
export interface ZimClientEvents {
  message: [MessageEvent];
  /**
   * A peer's identity key changed (once per change, however many of their
   * devices showed it); `blocked` when sending to them now needs
   * re-verification: the new key is recorded, `safetyNumber` shows the new
   * number, and `verify` with it lifts the block.
   */
  identityChanged: [{ uuid: string; blocked: boolean }];
  /**
   * A contact's device offered a signed pre-key or Kyber pre-key that the
   * account's identity key did not sign (the server may be tampering with
   * it). Sends to that contact fail with `BadDeviceKeysError` meanwhile.
   */
  badDeviceKeys: [{ uuid: string; deviceId: number; key: "signed_pre_key" | "kyber_pre_key" }];
  /**
   * The server's sealed-sender trust root is no longer the pinned one
   * (fingerprints as admins publish them). Sealed sends are held
   * (`SealedSendingPausedError`) until the app calls `acceptTrustRoot` or
   * `allowUnsealedSending`; `unsealedAllowed` says which policy is in force.
   */
  trustRootChanged: [{ pinned: string; presented: string; unsealedAllowed: boolean }];
  /** The peer's device decrypted the messages with these timestamps. */
  deliveryReceipt: [{ from: string; fromDevice: number; timestamps: number[] }];
  /** An envelope could not be decrypted (or was refused); it is acknowledged and dropped. */
  decryptionFailed: [{ envelopeId: string; from?: string; reason: DecryptionFailureReason; error: unknown }];
  groupUpdated: [GroupUpdatedEvent];
  deviceListChanged: [DeviceListChangedEvent];
  /**
   * An identity key the server handed out could not be checked against the
   * server's key-transparency log: it is not in the log (`not_included`),
   * the log's history was rewritten (`inconsistent`), a tree head is not
   * signed by the pinned log key (`bad_signature`), the log key changed
   * (`log_key_changed`), or a log this device has seen stopped answering
   * (`unavailable`). The server may be handing out a key that is not the
   * contact's. Messages are still sent (the key is treated like an
   * unverified key change); show a warning and ask the user to compare
   * safety numbers with `accountId` before trusting the conversation.
   */
  keyTransparencyFailure: [KeyTransparencyFailure];
  /**
   * The server says this device's one-time pre-keys are being claimed faster
   * than its per-device budget allows (someone may be draining them): the
   * client refills them at once. Informational; apps may log or show it.
   */
  preKeysDraining: [{ ecCount: number; pqCount: number }];
  /** The stored queue has been delivered after connecting. */
  queueEmpty: [];
  /**
   * The server is closing this device's connection, and it does not come
   * back by itself: `displaced` (another connection of the same device, the
   * same store run twice, took over), `removed` (the device was unlinked),
   * `disabled` or `deleted` (the account), or `shutdown`.
   */
  closedByServer: [{ reason: DisconnectReason }];
  /**
   * Something failed in the background (key maintenance, a receipt, an ack
   * after the connection closed). Not Node's "error" event: nothing throws
   * when no listener is attached.
   */
  warning: [unknown];
}

/** Options for {@link ZimClient}. */
export interface ZimClientOptions {
  store: DeviceStore;
  /** @default trust on first use, with verified contacts blocked on change */
  trustPolicy?: TrustPolicy;
  keyPolicy?: Partial<KeyPolicy>;
  /** Send an encrypted delivery receipt for received messages. @default true */
  sendReceipts?: boolean;
  /**
   * Hold delivery receipts this long and send them together, one per
   * sender. Receipts tell the server (through timing) who talks to whom, so
   * delaying and batching them blurs that link. @default 0 (after each batch)
   */
  receiptDelayMs?: number;
  /** Send sealed (the server does not learn the sender) whenever the recipient's access key is known. @default true */
  sealedSender?: boolean;
  /**
   * Retrying a send that got no answer (connection lost, server restarted,
   * 5xx), always with the send's idempotency key, so the server stores it
   * once. @default {@link defaultSendRetryPolicy} (one minute); `{ maxMs: 0 }` turns retries off
   */
  sendRetry?: Partial<SendRetryPolicy>;
  /**
   * Check every identity key the server hands out against the server's
   * key-transparency log, and every log head against the last one seen
   * (`keyTransparencyFailure` reports problems). `{}` (the default) uses the
   * log when the server offers it and pins its key on first use; give
   * `publicKey` to require a log signed by that key; `false` turns the
   * checks off. @default {}
   */
  keyTransparency?: KeyTransparencyOptions | false;
  /**
   * Allow a plain `http://` server URL to a host that is not loopback
   * (127.0.0.0/8, ::1, localhost are always allowed). Only for a network you
   * trust end to end: passwords and metadata travel in clear. Given to
   * `register` or `link`, the choice is kept in the store for later
   * constructions. @default false
   */
  allowInsecureHttp?: boolean;
}

/** Options for {@link ZimClient.register}. */
export interface RegisterOptions extends ZimClientOptions {
  serverUrl: string;
  username: string;
  inviteToken?: string;
  /** Accept sealed messages from anyone, without an access key. @default false */
  unrestrictedAccess?: boolean;
  /** The trust root fingerprint the admin published: checked before it is pinned. */
  trustRootFingerprint?: string;
}

/** Options for {@link ZimClient.link}. */
export interface LinkOptions extends ZimClientOptions {
  serverUrl: string;
  /** Called with the link URI (show it as text and QR) and when it expires. */
  onLinkCode: (link: { uri: string; expiresAt: number }) => void;
  /** How often to ask whether the primary device confirmed. @default 1000 */
  pollIntervalMs?: number;
  signal?: AbortSignal;
}

/**
 * An end-to-end encrypted ZimChat device: registration and linking,
 * sessions, sealed sender, groups with sender keys, attachments, safety
 * numbers. Every protocol operation is libsignal's; the homeserver sees only
 * ciphertext.
 *
 * @example
 * const alice = await ZimClient.register({ serverUrl, username: "alice", store: new SqliteDeviceStore("alice.db") });
 * alice.on("message", (m) => console.log(m.from, m.text));
 * await alice.connect();
 * await alice.sendText("bob", "Hey, did you see the news about the bond notes?");
 */
export class ZimClient extends EventEmitter<ZimClientEvents> {
  readonly store: DeviceStore;
  readonly api: HttpApi;
  private readonly signal: SignalStores;
  private readonly sealed: SealedSenderState;
  private readonly groups: GroupStore;
  private readonly keyPolicy: KeyPolicy;
  private readonly sendReceipts: boolean;
  private readonly receiptDelayMs: number;
  private readonly sealedSenderEnabled: boolean;
  private readonly sendRetry: SendRetryPolicy;
  private readonly dedup: MessageDedup;
  /** Null when key transparency is off. */
  private readonly keyLog: KeyTransparencyChecker | null;
  /**
   * Store work runs one task at a time (libsignal's stores are async; SQLite
   * transactions must not interleave), group-committed.
   */
  private readonly tasks: StoreQueue;
  private socket: Socket<ServerToClientEvents, ClientToServerEvents> | null = null;
  /** The unauthenticated connection for sealed sends: its own connection, so the server cannot tie it to this device. */
  private sealedSocket: Socket<Record<string, never>, SealedClientToServerEvents> | null = null;
  private readonly registrationIds = new Map<string, number>();
  /** Receipts and key upkeep still running; `close` waits for them. */
  private readonly background = new Set<Promise<unknown>>();
  private readonly pendingReceipts = new Map<string, number[]>();
  private receiptTimer: NodeJS.Timeout | null = null;
  private readonly identityChanges: IdentityChangeNotifier;
  /** Trust-root changes already reported (by presented fingerprint), so `trustRootChanged` fires once per change. */
  private readonly reportedTrustRoots = new Set<string>();

  constructor(options: ZimClientOptions) {
    super();
    this.store = options.store;
    this.tasks = new StoreQueue(this.store);
    const local = this.store.getLocal();
    if (!local) throw new Error("the store holds no registered device: use ZimClient.register or ZimClient.link");
    // The choice made when this device was registered or linked is kept with it.
    checkServerUrl(local.serverUrl, { allowInsecureHttp: options.allowInsecureHttp ?? this.store.getValue("allowInsecureHttp") === "1" });
    this.api = new HttpApi(local.serverUrl, { uuid: local.uuid, deviceId: local.deviceId, password: local.password });
    this.keyPolicy = { ...defaultKeyPolicy, ...options.keyPolicy };
    this.sendReceipts = options.sendReceipts ?? true;
    this.receiptDelayMs = options.receiptDelayMs ?? 0;
    this.sealedSenderEnabled = options.sealedSender ?? true;
    this.sendRetry = { ...defaultSendRetryPolicy, ...options.sendRetry };
    this.dedup = new MessageDedup(options.store);
    this.identityChanges = new IdentityChangeNotifier(this.store, this.tasks, (e) => this.emit("identityChanged", e), (error) => this.emit("warning", error));
    this.signal = signalStores(this.store, options.trustPolicy ?? trustOnFirstUse, (uuid, _blocked, previous) => this.identityChanges.noticed(uuid, previous));
    this.sealed = new SealedSenderState(this.store, this.api);
    this.groups = new GroupStore(this.store);
    // Its state is written through the task queue, never inside a running task (it may be called from one).
    const save = (key: string, value: string): void => this.inBackground(this.tasks.run(async () => this.store.setValue(key, value)));
    this.keyLog = options.keyTransparency === false ? null : new KeyTransparencyChecker(local.serverUrl, () => this.credentials, this.store, save, options.keyTransparency ?? {});
  }

  /**
   * Creates an account: a new identity key pair, registration id, device
   * password, access key, signed pre-key, Kyber last-resort key, and a first
   * batch of one-time keys, all generated here and kept in `store`. Pins the
   * server's trust root and publishes the access key's hash.
   */
  static async register(options: RegisterOptions): Promise<ZimClient> {
    const { store } = options;
    if (store.getLocal()?.uuid) throw new Error("this store already holds a registered device");
    checkServerUrl(options.serverUrl, options);
    const identity = PrivateKey.generate();
    const pending: LocalDevice = {
      serverUrl: options.serverUrl,
      uuid: "",
      deviceId: 1,
      username: options.username,
      password: randomBytes(24).toString("base64url"),
      registrationId: randomInt(1, 16381),
      identityPrivateKey: identity.serialize(),
      nextPreKeyId: randomInt(1, 0x7fff0000),
      accessKey: randomBytes(16).toString("base64"),
    };
    // One transaction: a refused registration leaves the store as it was.
    await store.transaction(async () => {
      store.setLocal(pending);
      if (options.allowInsecureHttp) store.setValue("allowInsecureHttp", "1");
      const api = new HttpApi(options.serverUrl);
      await new SealedSenderState(store, api).pinTrustRoot(options.trustRootFingerprint);
      const registered = await api.register({
        username: options.username,
        password: pending.password,
        registrationId: pending.registrationId,
        identityKey: b64(identity.getPublicKey().serialize()),
        signedPreKey: newSignedPreKey(store, identity),
        pqLastResortPreKey: newKyberPreKey(store, identity, true),
        ...(options.inviteToken ? { inviteToken: options.inviteToken } : {}),
      });
      store.setLocal({ ...store.getLocal()!, uuid: registered.uuid, deviceId: registered.deviceId });
      store.setValue("ownDevices", JSON.stringify([registered.deviceId]));
    });
    const client = new ZimClient(options);
    await client.api.setAttributes({ accessKey: pending.accessKey, unrestrictedAccess: options.unrestrictedAccess ?? false });
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
    const { store } = options;
    if (store.getLocal()?.uuid) throw new Error("this store already holds a registered device");
    checkServerUrl(options.serverUrl, options);
    const api = new HttpApi(options.serverUrl);
    const ephemeral = PrivateKey.generate();
    const { code, expiresAt } = await api.createLink();
    options.onLinkCode({ uri: linkUri({ serverUrl: options.serverUrl, code, publicKey: ephemeral.getPublicKey() }), expiresAt });
    let sealedMessage: string | undefined;
    while (!sealedMessage) {
      options.signal?.throwIfAborted();
      const status = await api.linkStatus(code);
      if (status.confirmed) sealedMessage = status.provisioningMessage;
      else await new Promise((resolve) => setTimeout(resolve, options.pollIntervalMs ?? 1000));
    }
    const provisioning = openProvisioning(ephemeral, bytes(sealedMessage), code);
    const identity = PrivateKey.deserialize(bytes(provisioning.identityPrivateKey));
    const pending: LocalDevice = {
      serverUrl: options.serverUrl,
      uuid: provisioning.uuid,
      deviceId: 0,
      username: provisioning.username,
      password: randomBytes(24).toString("base64url"),
      registrationId: randomInt(1, 16381),
      identityPrivateKey: identity.serialize(),
      nextPreKeyId: randomInt(1, 0x7fff0000),
      accessKey: provisioning.accessKey,
    };
    await store.transaction(async () => {
      store.setLocal(pending);
      if (options.allowInsecureHttp) store.setValue("allowInsecureHttp", "1");
      const sealed = new SealedSenderState(store, api);
      if (provisioning.trustRoot) sealed.adoptTrustRoot(provisioning.trustRoot);
      await sealed.pinTrustRoot();
      const linked = await api.linkDevice({
        code,
        password: pending.password,
        registrationId: pending.registrationId,
        signedPreKey: newSignedPreKey(store, identity),
        pqLastResortPreKey: newKyberPreKey(store, identity, true),
      });
      store.setLocal({ ...store.getLocal()!, deviceId: linked.deviceId });
    });
    const client = new ZimClient(options);
    await client.maintainKeys();
    await client.refreshDevices();
    return client;
  }

  /**
   * Approves a link request shown by a new device (its URI, typed or
   * scanned): seals the account identity key pair, access key and pinned
   * trust root to the new device's ephemeral key and attaches it to the
   * linking code. Only the primary device (device 1) may.
   */
  async approveLink(uri: string): Promise<void> {
    const request = parseLinkUri(uri);
    if (new URL(request.serverUrl).origin !== new URL(this.local.serverUrl).origin) {
      throw new Error(`the link request is for ${request.serverUrl}, this device's homeserver is ${this.local.serverUrl}`);
    }
    const local = this.local;
    const message = sealProvisioning(
      request.publicKey,
      {
        uuid: local.uuid,
        username: local.username,
        identityPrivateKey: b64(local.identityPrivateKey),
        accessKey: local.accessKey,
        ...(this.store.getValue("trustRoot") ? { trustRoot: this.store.getValue("trustRoot")! } : {}),
      },
      request.code,
    );
    await this.api.confirmLink(request.code, { provisioningMessage: b64(message) });
  }

  /** This account's devices, as the server lists them (also updates what sync messages go to). */
  async devices(): Promise<DeviceInfo[]> {
    return this.refreshDevices();
  }

  /** Unlinks a device of this account (the primary may unlink any other; a device may unlink itself). */
  async unlinkDevice(deviceId: number): Promise<void> {
    await this.api.removeDevice(deviceId);
    await this.refreshDevices();
  }

  /**
   * A reinstall that kept its credentials: a new identity key pair,
   * registration id and signed keys replace the old ones on the server
   * (which drops other devices, one-time keys and queued envelopes), and
   * every local session is forgotten. Contacts see the safety number change.
   */
  async resetIdentity(): Promise<void> {
    await this.tasks.run(async () => {
      const identity = PrivateKey.generate();
      const registrationId = randomInt(1, 16381);
      for (const kind of ["ec", "signed", "kyber"] as const) for (const k of this.store.listPreKeys(kind)) this.store.removePreKey(kind, k.id);
      this.store.setValue("kyberLastResortIds", "[]");
      this.store.setValue("senderCertificate", "");
      this.store.setValue("ownDevices", JSON.stringify([this.local.deviceId]));
      this.store.setLocal({ ...this.local, identityPrivateKey: identity.serialize(), registrationId });
      this.store.clearSessions();
      this.registrationIds.clear();
      // Contacts know the old key and refuse a sealed message whose certificate names another (a server could mint
      // one): the first message to each goes authenticated, and their reply carries their access key again.
      for (const [key] of this.store.valuesWithPrefix("accessKey:")) this.store.setValue(key, "");
      await this.api.resetIdentity({
        registrationId,
        identityKey: b64(identity.getPublicKey().serialize()),
        signedPreKey: newSignedPreKey(this.store, identity),
        pqLastResortPreKey: newKyberPreKey(this.store, identity, true),
      });
    });
    await this.maintainKeys();
  }

  /** This device's account id, device id and username. */
  get local(): LocalDevice {
    return this.store.getLocal()!;
  }

  /**
   * Connects the socket, drains the stored queue (decrypting and
   * acknowledging each envelope) and resolves at `queue-empty`.
   */
  async connect(): Promise<void> {
    if (this.socket) return;
    const { uuid, deviceId, password, serverUrl } = this.local;
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(serverUrl, {
      auth: { username: `${uuid}.${deviceId}`, password },
      transports: ["websocket"],
    });
    this.socket = socket;
    socket.on("envelopes", (batch, received) => {
      this.inBackground(this.processEnvelopes(batch).then(() => received?.()));
    });
    socket.on("queue-empty", () => this.emit("queueEmpty"));
    socket.on("closing", (reason) => this.emit("closedByServer", { reason }));
    socket.on("devices-changed", () => this.inBackground(this.refreshDevices()));
    socket.on("keys-draining", () => this.inBackground(this.maintainKeys()));
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
    await this.refreshDevices();
    this.inBackground(this.maintainKeys());
    // This account's own key must be in the log too (contacts will check it); this also pins the log key early.
    if (this.keyLog) {
      const ownKey = PrivateKey.deserialize(this.local.identityPrivateKey).getPublicKey().serialize();
      if (this.keyLog.isDue(this.local.uuid, ownKey)) this.inBackground(this.checkKeyLog(this.local.uuid, ownKey));
    }
  }

  private inBackground(work: Promise<unknown>): void {
    const tracked = work.catch((error: unknown) => this.emit("warning", error)).finally(() => this.background.delete(tracked));
    this.background.add(tracked);
  }

  /** Closes the sockets. */
  disconnect(): void {
    this.socket?.close();
    this.socket = null;
    this.sealedSocket?.close();
    this.sealedSocket = null;
  }

  /** Sends held receipts, lets background work (receipts, key upkeep) finish, then closes the sockets and the store. */
  async close(): Promise<void> {
    // Take no new envelopes (unacknowledged ones come back next time), finish what is running.
    this.socket?.off("envelopes");
    this.flushReceipts();
    while (this.background.size) await Promise.allSettled([...this.background]);
    this.disconnect();
    await this.tasks.idle();
    this.store.close();
  }

  /** The account id for a username (cached), or the argument if it is already a UUID. */
  async resolve(user: string): Promise<string> {
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(user)) return user;
    const cached = this.store.getValue(`username:${user}`);
    if (cached) return cached;
    const { uuid } = await this.api.lookupUsername(user);
    this.store.setValue(`username:${user}`, uuid);
    return uuid;
  }

  /**
   * Encrypts a text for every device of the recipient (sealed when their
   * access key is known) and for this account's other devices (a sent
   * transcript), and sends it. Refused with {@link UntrustedIdentityError}
   * when the recipient's key changed after it was verified. Never sends
   * anything unencrypted.
   */
  async sendText(to: string, text: string): Promise<{ timestamp: number; envelopes: SendMessagesResponse["envelopes"] }> {
    return this.sendDirect(to, { text });
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
    const { timestamp } = await this.sendDirect(to, { text: options.caption ?? "", attachment });
    return { timestamp, attachment };
  }

  /**
   * Downloads an attachment, checks its digest, decrypts it: returns the
   * bytes, or writes them to `destination` (only once they checked out).
   * @throws AttachmentError when the ciphertext was tampered with
   */
  async downloadAttachment(pointer: AttachmentPointer): Promise<Buffer>;
  async downloadAttachment(pointer: AttachmentPointer, destination: string): Promise<void>;
  async downloadAttachment(pointer: AttachmentPointer, destination?: string): Promise<Buffer | void> {
    const { serverUrl } = this.local;
    if (destination === undefined) return downloadAttachment(serverUrl, this.credentials, pointer);
    return downloadAttachment(serverUrl, this.credentials, pointer, destination);
  }

  /** Encrypts (fresh key, padded to a size bucket) and uploads a file: a path, bytes or a stream. */
  private async uploadAttachment(source: AttachmentInput, { contentType, fileName }: UploadOptions): Promise<AttachmentPointer> {
    return uploadAttachment(this.local.serverUrl, this.credentials, source, { ...(contentType ? { contentType } : {}), ...(fileName ? { fileName } : {}) });
  }

  private get credentials(): { uuid: string; deviceId: number; password: string } {
    const { uuid, deviceId, password } = this.local;
    return { uuid, deviceId, password };
  }

  private async sendDirect(to: string, body: Pick<Content, "text" | "attachment">): Promise<{ timestamp: number; envelopes: SendMessagesResponse["envelopes"] }> {
    const uuid = await this.resolve(to);
    const timestamp = Date.now();
    const content: Content = { v: 1, id: randomUUID(), timestamp, ...body, accessKey: this.local.accessKey };
    const record = (): void =>
      this.store.addMessage(this.outgoingRecord(randomUUID(), uuid, content));
    const result = await this.sendContent(uuid, content, record);
    await this.syncToOwnDevices({ ...content, sync: { destination: uuid } });
    return { timestamp, envelopes: result.envelopes };
  }

  private outgoingRecord(id: string, peer: string, content: Content, senderDeviceId = this.local.deviceId): StoredMessage {
    return {
      id,
      peer,
      direction: "out",
      author: this.local.uuid,
      senderDeviceId,
      text: content.text ?? "",
      timestamp: content.timestamp,
      storedAt: Date.now(),
      ...(content.attachment ? { attachment: content.attachment } : {}),
    };
  }

  /** The stored conversation with a user (or `group:<id>`), oldest first. */
  async conversation(user: string, limit?: number): Promise<StoredMessage[]> {
    if (user.startsWith("group:")) return this.store.messages(user, limit);
    return this.store.messages(await this.resolve(user), limit);
  }

  /** The safety number with a user (their key as this device knows it, fetching it on first contact). */
  async safetyNumber(user: string): Promise<SafetyNumber> {
    const uuid = await this.resolve(user);
    let known = this.store.getIdentity(uuid);
    if (!known) {
      await this.tasks.run(() => this.startSessions(uuid, "*"));
      known = this.store.getIdentity(uuid);
    }
    if (!known) throw new Error(`no identity key known for ${user}`);
    const localKey = PrivateKey.deserialize(this.local.identityPrivateKey).getPublicKey();
    return safetyNumber(this.local.uuid, localKey, uuid, PublicKey.deserialize(known.publicKey));
  }

  /**
   * Marks a user verified when `entered` (60 digits or a scanned payload)
   * matches the safety number; this also lifts a block after a key change.
   * @returns whether it matched
   */
  async verify(user: string, entered: string): Promise<boolean> {
    const uuid = await this.resolve(user);
    const expected = await this.safetyNumber(uuid);
    if (!matchesSafetyNumber(expected, entered)) return false;
    await this.tasks.run(async () => this.store.saveIdentity({ ...this.store.getIdentity(uuid)!, verified: true, blocked: false }));
    return true;
  }

  /** Accepts a changed key without verifying it: sending is allowed again, the contact is unverified. */
  async acceptIdentityChange(user: string): Promise<void> {
    const uuid = await this.resolve(user);
    await this.tasks.run(async () => {
      const known = this.store.getIdentity(uuid);
      if (known) this.store.saveIdentity({ ...known, verified: false, blocked: false });
    });
  }

  /**
   * Pins the trust root the server presents now, after a `trustRootChanged`
   * (check `expectedFingerprint` with the server's admin, out of band: a
   * server that swaps its trust root can mint certificates for anyone).
   * Sealed sending resumes.
   * @throws TrustRootMismatchError when `expectedFingerprint` is given and differs
   * @returns the fingerprint now pinned
   */
  async acceptTrustRoot(expectedFingerprint?: string): Promise<string> {
    const fingerprint = await this.tasks.run(() => this.sealed.acceptTrustRoot(expectedFingerprint));
    this.reportedTrustRoots.clear();
    return fingerprint;
  }

  /**
   * While the server's trust root differs from the pinned one, send
   * authenticated (the server learns the sender of each message) instead
   * of holding sealed sends. Kept until `acceptTrustRoot`.
   */
  async allowUnsealedSending(): Promise<void> {
    await this.tasks.run(async () => this.sealed.allowUnsealed());
  }

  /** Whether a user is verified, and whether sending to them is blocked. */
  async trustState(user: string): Promise<{ verified: boolean; blocked: boolean } | null> {
    const known = this.store.getIdentity(await this.resolve(user));
    return known ? { verified: known.verified, blocked: known.blocked } : null;
  }

  /**
   * Checks a user's identity key (as this device knows it, fetched on first
   * contact) against the server's key-transparency log now, unless that key
   * was verified before. A failure is also emitted as `keyTransparencyFailure`.
   * @returns null when the key is in the log (or the server offers no log), else the failure
   */
  async checkKeyTransparency(user: string): Promise<KeyTransparencyFailure | null> {
    const uuid = await this.resolve(user);
    let known = this.store.getIdentity(uuid);
    // First contact: starting the sessions checks the key (and emits a failure); the answer below repeats that check quietly.
    const fetched = !known;
    if (fetched) {
      await this.tasks.run(() => this.startSessions(uuid, "*"));
      known = this.store.getIdentity(uuid);
    }
    if (!known) throw new Error(`no identity key known for ${user}`);
    return this.checkKeyLog(uuid, known.publicKey, !fetched);
  }

  /** Checks one key against the log, emitting `keyTransparencyFailure` on failure (unless `emit` is false). Never throws. */
  private async checkKeyLog(uuid: string, identityKey: Uint8Array, emit = true): Promise<KeyTransparencyFailure | null> {
    if (!this.keyLog) return null;
    const failure = await this.keyLog.check(uuid, identityKey);
    if (failure && emit) this.emit("keyTransparencyFailure", failure);
    return failure;
  }

  /**
   * Keeps pre-keys healthy: refills one-time keys when the server holds
   * fewer than `refillBelow` (or, while the server says they are being
   * drained, fewer than a full batch: `preKeysDraining`), rotates the signed
   * and last-resort keys when due, and drops replaced ones after the grace period.
   */
  async maintainKeys(now = Date.now()): Promise<void> {
    const counts = await this.api.keyCount();
    if (counts.draining) this.emit("preKeysDraining", { ecCount: counts.ecCount, pqCount: counts.pqCount });
    await this.tasks.run(async () => {
      const identity = PrivateKey.deserialize(this.local.identityPrivateKey);
      const { batchSize, rotateEveryMs, graceMs } = this.keyPolicy;
      const refillBelow = counts.draining ? batchSize : this.keyPolicy.refillBelow;
      const upload = newOneTimeKeys(this.store, identity, counts.ecCount < refillBelow ? batchSize : 0, counts.pqCount < refillBelow ? batchSize : 0);
      const rotatedAt = Number(this.store.getValue("signedPreKeyRotatedAt") ?? 0);
      const body = { ...(upload.preKeys?.length ? { preKeys: upload.preKeys } : {}), ...(upload.pqPreKeys?.length ? { pqPreKeys: upload.pqPreKeys } : {}) };
      const rotation = now - rotatedAt >= rotateEveryMs ? { signedPreKey: newSignedPreKey(this.store, identity), pqLastResortPreKey: newKyberPreKey(this.store, identity, true) } : {};
      if (Object.keys(body).length || Object.keys(rotation).length) await this.api.uploadKeys({ ...body, ...rotation });
      pruneReplacedKeys(this.store, graceMs, now);
    });
  }

  // ---------------------------------------------------------------- groups

  /** Groups this device knows, including ones this account has left. */
  listGroups(): GroupState[] {
    return this.groups.list();
  }

  /** A group's state, or null. */
  group(groupId: string): GroupState | null {
    return this.groups.get(groupId);
  }

  /**
   * Creates a group with this account as its admin and sends its state to
   * every member (and this account's other devices) over pairwise sessions.
   * The server stores nothing about it.
   */
  async createGroup(title: string, members: string[]): Promise<GroupState> {
    const uuids = await Promise.all(members.map((m) => this.resolve(m)));
    const me = this.local.uuid;
    const group: GroupState = { id: randomUUID(), title, members: [...new Set([me, ...uuids])], admins: [me], revision: 0 };
    await this.tasks.run(async () => this.groups.save(group));
    await this.announceGroup(group, []);
    return group;
  }

  /** Adds members (admins only). */
  async addGroupMembers(groupId: string, users: string[]): Promise<GroupState> {
    const uuids = await Promise.all(users.map((u) => this.resolve(u)));
    const current = this.adminGroup(groupId);
    const next: GroupState = { ...current, members: [...new Set([...current.members, ...uuids])], revision: current.revision + 1 };
    await this.tasks.run(async () => this.groups.save(next));
    await this.announceGroup(next, []);
    return next;
  }

  /**
   * Removes members (admins only). The removed members are told, every
   * member starts a new sender key, so the removed cannot read what follows.
   */
  async removeGroupMembers(groupId: string, users: string[]): Promise<GroupState> {
    const uuids = new Set(await Promise.all(users.map((u) => this.resolve(u))));
    const current = this.adminGroup(groupId);
    const next: GroupState = {
      ...current,
      members: current.members.filter((m) => !uuids.has(m)),
      admins: current.admins.filter((a) => !uuids.has(a)),
      revision: current.revision + 1,
    };
    if (!next.admins.length) throw new GroupError("a group needs at least one admin");
    await this.tasks.run(async () => {
      this.groups.save(next);
      this.groups.rotate(groupId);
    });
    await this.announceGroup(next, [...uuids].filter((u) => current.members.includes(u)));
    return next;
  }

  private adminGroup(groupId: string): GroupState {
    const group = this.groups.get(groupId);
    if (!group || !group.members.includes(this.local.uuid)) throw new GroupError(`not a member of group ${groupId}`);
    if (!group.admins.includes(this.local.uuid)) throw new GroupError(`not an admin of group ${groupId}`);
    return group;
  }

  /** Sends a group's state to its members, to `alsoTell` (removed members) and to this account's other devices. */
  private async announceGroup(group: GroupState, alsoTell: string[]): Promise<void> {
    const me = this.local.uuid;
    const content: Content = { v: 1, timestamp: Date.now(), groupUpdate: group, accessKey: this.local.accessKey };
    for (const uuid of [...group.members.filter((m) => m !== me), ...alsoTell]) await this.sendContent(uuid, content);
    await this.syncToOwnDevices({ ...content, sync: {} });
  }

  /**
   * Sends a text to a group: one sender-key ciphertext (libsignal
   * `groupEncrypt`) inside one multi-recipient sealed-sender message for
   * every member device, uploaded once; the server fans it out.
   */
  async sendGroupText(groupId: string, text: string): Promise<{ timestamp: number; response: MultiRecipientResponse }> {
    return this.sendGroup(groupId, { text });
  }

  /** Sends an attachment to a group. */
  async sendGroupAttachment(
    groupId: string,
    source: AttachmentInput,
    options: UploadOptions & { caption?: string } = {},
  ): Promise<{ timestamp: number; attachment: AttachmentPointer }> {
    const attachment = await this.uploadAttachment(source, options);
    const { timestamp } = await this.sendGroup(groupId, { text: options.caption ?? "", attachment });
    return { timestamp, attachment };
  }

  private async sendGroup(groupId: string, body: Pick<Content, "text" | "attachment">): Promise<{ timestamp: number; response: MultiRecipientResponse }> {
    const me = this.local.uuid;
    const group = this.groups.get(groupId);
    if (!group || !group.members.includes(me)) throw new GroupError(`not a member of group ${groupId}`);
    const certificate = await this.senderCertificate();
    if (!certificate) throw new GroupError("the homeserver issued no sender certificate; group messages need sealed sender");
    const recipients = group.members.filter((m) => m !== me);
    const content: Content = { v: 1, id: randomUUID(), timestamp: Date.now(), ...body, group: { id: groupId } };
    const padded = encodeContent(content);
    let response: MultiRecipientResponse = { serverTimestamp: Date.now(), recipients: [] };
    // One key for the whole send: nothing is stored on a 409/410, so a corrected retry may reuse it.
    const idempotencyKey = newIdempotencyKey();
    if (recipients.length) {
      for (let attempt = 0; ; attempt++) {
        const addresses = await this.tasks.run(async () => {
          for (const uuid of recipients) if (!this.store.sessionDevices(uuid).length) await this.startSessions(uuid, "*");
          return recipients.flatMap((uuid) => this.store.sessionDevices(uuid).map((d) => ProtocolAddress.new(uuid, d)));
        });
        await this.distributeSenderKey(groupId, addresses);
        const message = await this.tasks.run(async () => {
          const local = ProtocolAddress.new(me, this.local.deviceId);
          const ciphertext = await groupEncrypt(local, this.groups.distributionId(groupId), this.signal.senderKeys, padded);
          const usmc = UnidentifiedSenderMessageContent.new(ciphertext, certificate, ContentHint.Default, groupIdBytes(groupId));
          return sealedSenderMultiRecipientEncrypt({ content: usmc, recipients: addresses, identityStore: this.signal.identities, sessionStore: this.signal.sessions });
        });
        try {
          response = await this.deliverMulti(recipients, b64(message), idempotencyKey);
          break;
        } catch (error) {
          if (!(error instanceof ApiError) || attempt >= 3 || !error.body.recipients) throw error;
          await this.tasks.run(async () => this.fixDevices(error.body.recipients ?? []));
        }
      }
    }
    await this.tasks.run(async () => this.store.addMessage(this.outgoingRecord(randomUUID(), groupConversation(groupId), content)));
    await this.syncToOwnDevices({ ...content, sync: {} });
    return { timestamp: content.timestamp, response };
  }

  /** Sends this device's current sender key to member devices that do not hold it yet (pairwise, sealed when possible). */
  private async distributeSenderKey(groupId: string, addresses: ProtocolAddress[]): Promise<void> {
    const { skdm, needing } = await this.tasks.run(async () => {
      const holders = this.groups.keyHolders(groupId);
      const needing = [...new Set(addresses.filter((a) => !holders.has(addressKey(a.name(), a.deviceId()))).map((a) => a.name()))];
      if (!needing.length) return { skdm: null, needing };
      const local = ProtocolAddress.new(this.local.uuid, this.local.deviceId);
      const message = await SenderKeyDistributionMessage.create(local, this.groups.distributionId(groupId), this.signal.senderKeys);
      return { skdm: b64(message.serialize()), needing };
    });
    if (!skdm) return;
    for (const uuid of needing) {
      await this.sendContent(uuid, { v: 1, timestamp: Date.now(), senderKey: { groupId, message: skdm }, accessKey: this.local.accessKey });
      await this.tasks.run(async () => this.groups.addKeyHolders(groupId, this.store.sessionDevices(uuid).map((d) => addressKey(uuid, d))));
    }
  }

  private async deliverMulti(recipients: string[], message: string, idempotencyKey: string): Promise<MultiRecipientResponse> {
    const accessKeys = recipients.map((uuid) => ({ uuid, accessKey: this.sealed.accessKeyOf(uuid) }));
    const allKnown = accessKeys.every((k): k is { uuid: string; accessKey: string } => !!k.accessKey);
    if (allKnown && this.sealedSenderEnabled) {
      const request = { message, accessKeys, idempotencyKey };
      try {
        return await withSendRetry(async () => {
          if (this.socket?.connected) {
            const result = (await this.sealedConnection().timeout(this.sendRetry.attemptTimeoutMs).emitWithAck("send-multi", request)) as SocketResult<MultiRecipientResponse>;
            if (result.ok) return result.value;
            throw apiError(result.status, result.error);
          }
          return this.api.sendMultiRecipient(request, false);
        }, this.sendRetry);
      } catch (error) {
        // Sealed sends rate limited (429): the same message, authenticated, as below.
        if (!(error instanceof ApiError && error.code === "rate_limited")) throw error;
      }
    }
    // Some access key is unknown: authenticated, still stored without a sender.
    return withSendRetry(() => this.api.sendMultiRecipient({ message, idempotencyKey }, true), this.sendRetry);
  }

  /** Brings sessions in line with the server's per-recipient device lists (after a 409 or 410). */
  private async fixDevices(mismatches: RecipientMismatch[]): Promise<void> {
    for (const m of mismatches) {
      for (const id of m.extraDevices ?? []) this.forgetSession(addressKey(m.uuid, id));
      for (const id of m.staleDevices ?? []) this.forgetSession(addressKey(m.uuid, id));
      for (const id of [...(m.missingDevices ?? []), ...(m.staleDevices ?? [])]) await this.startSessions(m.uuid, id);
    }
  }

  // ------------------------------------------------------------- sending

  /** Device ids of this account other than this device, as last listed. */
  private otherOwnDevices(): number[] {
    const own = JSON.parse(this.store.getValue("ownDevices") ?? "[]") as number[];
    return own.filter((d) => d !== this.local.deviceId);
  }

  /** Fetches the device list; emits `deviceListChanged` when it differs from the last one. */
  private async refreshDevices(): Promise<DeviceInfo[]> {
    const { devices } = await this.api.devices();
    const change = await this.tasks.run(async () => {
      const before = JSON.parse(this.store.getValue("ownDevices") ?? "[]") as number[];
      const now = devices.map((d) => d.id);
      const added = now.filter((d) => !before.includes(d));
      const removed = before.filter((d) => !now.includes(d));
      this.store.setValue("ownDevices", JSON.stringify(now));
      for (const id of removed) this.forgetSession(addressKey(this.local.uuid, id));
      return { devices, added, removed };
    });
    if (change.added.length || change.removed.length) {
      this.emit("deviceListChanged", change);
      // A new device of this account learns the groups this device knows.
      if (change.added.some((d) => d !== this.local.deviceId)) {
        for (const group of this.groups.list()) {
          await this.syncToOwnDevices({ v: 1, timestamp: Date.now(), groupUpdate: group, sync: {} });
        }
      }
    }
    return devices;
  }

  /** Sends a sent transcript (or other sync content) to this account's other devices, if any. */
  private async syncToOwnDevices(content: Content): Promise<void> {
    if (!this.otherOwnDevices().length) return;
    await this.sendContent(this.local.uuid, content);
  }

  /**
   * Encrypts and sends content to every device of `uuid` (for this account:
   * its other devices), sealed when the recipient's access key is known,
   * retrying after 409/410. `record` runs in the same store transaction as
   * the first encryption.
   */
  private async sendContent(uuid: string, content: Content, record?: () => void): Promise<SendMessagesResponse> {
    const known = this.store.getIdentity(uuid);
    if (known?.blocked) throw new UntrustedIdentityError(uuid);
    const padded = encodeContent(content);
    // Set when a sealed send was rate limited (429): this content goes authenticated, as on a 401.
    let unsealed = false;
    // One key for the whole send: nothing is stored on a 401/409/410, so a corrected retry may reuse it.
    const idempotencyKey = newIdempotencyKey();
    for (let attempt = 0; ; attempt++) {
      const seal = unsealed ? null : await this.sealingFor(uuid);
      const messages = await this.tasks.run(async () => {
        const encrypted = await this.encryptForAll(uuid, padded, seal?.certificate ?? null);
        if (attempt === 0) record?.();
        return encrypted;
      });
      try {
        // Sealed only if every message was sealed (a stale certificate is not used: see encryptForAll).
        const accessKey = seal && messages.every((m) => m.type === "sealed") ? seal.accessKey : null;
        return await this.deliver(uuid, messages, accessKey, idempotencyKey);
      } catch (error) {
        if (!(error instanceof ApiError) || attempt >= 3) throw error;
        if (error.code === "unauthorized" && seal) {
          // The access key no longer works (changed): send authenticated from now on.
          await this.tasks.run(async () => this.sealed.forgetAccessKey(uuid));
        } else if (error.code === "rate_limited" && seal) {
          // The sealed allowance is used up (the server limits sealed sends per recipient and address): send authenticated.
          unsealed = true;
        } else if (error.code === "mismatched_devices" || error.code === "stale_devices") {
          await this.tasks.run(async () => this.fixDevices([{ uuid, ...error.body }]));
          // This account's device list changed under us: learn it (and tell the app) before retrying.
          if (uuid === this.local.uuid) await this.refreshDevices();
        } else {
          throw error;
        }
      }
    }
  }

  /** The certificate and access key to seal with, or null to send authenticated (own devices, unknown key, no certificate). */
  private async sealingFor(uuid: string): Promise<{ certificate: SenderCertificate; accessKey: string } | null> {
    if (!this.sealedSenderEnabled || uuid === this.local.uuid) return null;
    const accessKey = this.sealed.accessKeyOf(uuid);
    if (!accessKey) return null;
    try {
      const certificate = await this.senderCertificate();
      return certificate ? { certificate, accessKey } : null;
    } catch (error) {
      // Sending authenticated instead tells the server who sends: only when the app chose that.
      if (error instanceof SealedSendingPausedError && this.sealed.unsealedAllowed()) return null;
      throw error;
    }
  }

  /**
   * This device's sender certificate; a trust-root change is reported once
   * (`trustRootChanged`) and refused with {@link SealedSendingPausedError}.
   */
  private async senderCertificate(): Promise<SenderCertificate | null> {
    try {
      return await this.sealed.certificate();
    } catch (error) {
      if (!(error instanceof TrustRootMismatchError)) throw error;
      if (!this.reportedTrustRoots.has(error.presented)) {
        this.reportedTrustRoots.add(error.presented);
        this.emit("trustRootChanged", { pinned: error.pinned, presented: error.presented, unsealedAllowed: this.sealed.unsealedAllowed() });
      }
      throw new SealedSendingPausedError(error.pinned, error.presented);
    }
  }

  /** One ciphertext per device of `uuid` this device has (or now starts) a session with; sealed when a certificate is given. */
  private async encryptForAll(uuid: string, padded: Uint8Array<ArrayBuffer>, certificate: SenderCertificate | null): Promise<OutgoingMessage[]> {
    if (this.store.getIdentity(uuid)?.blocked) throw new UntrustedIdentityError(uuid);
    const local = this.local;
    let devices = this.store.sessionDevices(uuid);
    if (uuid === local.uuid) {
      for (const d of this.otherOwnDevices()) if (!devices.includes(d)) await this.startSessions(uuid, d);
      devices = this.store.sessionDevices(uuid).filter((d) => d !== local.deviceId);
    } else if (!devices.length) {
      await this.startSessions(uuid, "*");
      devices = this.store.sessionDevices(uuid);
    }
    const me = ProtocolAddress.new(local.uuid, local.deviceId);
    // A certificate fetched before this device's identity key changed (resetIdentity) names the old key: send authenticated.
    const identityKey = PrivateKey.deserialize(local.identityPrivateKey).getPublicKey().serialize();
    if (certificate && !Buffer.from(certificate.key().serialize()).equals(Buffer.from(identityKey))) certificate = null;
    const out: OutgoingMessage[] = [];
    for (const deviceId of devices) {
      const address = ProtocolAddress.new(uuid, deviceId);
      let message: CiphertextMessage;
      try {
        message = await signalEncrypt(padded, address, me, this.signal.sessions, this.signal.identities);
      } catch (error) {
        if (!(error instanceof LibSignalErrorBase) || error.code !== ErrorCode.UntrustedIdentity) throw error;
        if (this.store.getIdentity(uuid)?.blocked) throw new UntrustedIdentityError(uuid);
        // The session was built on a key the user has since replaced (verified or accepted a new one): start over.
        this.forgetSession(addressKey(uuid, deviceId));
        await this.startSessions(uuid, deviceId);
        message = await signalEncrypt(padded, address, me, this.signal.sessions, this.signal.identities);
      }
      const registrationId = await this.remoteRegistrationId(address);
      if (certificate) {
        const usmc = UnidentifiedSenderMessageContent.new(message, certificate, ContentHint.Default, null);
        const sealed = await sealedSenderEncrypt(usmc, address, this.signal.identities);
        out.push({ type: "sealed", destinationDeviceId: deviceId, destinationRegistrationId: registrationId, content: b64(sealed) });
      } else {
        out.push({
          type: message.type() === CiphertextMessageType.PreKey ? "prekey" : "whisper",
          destinationDeviceId: deviceId,
          destinationRegistrationId: registrationId,
          content: b64(message.serialize()),
        });
      }
    }
    return out;
  }

  private forgetSession(address: string): void {
    this.store.deleteSession(address);
    this.registrationIds.delete(address);
  }

  /** A peer device's registration id, from its session (cached: sessions are only replaced through startSessions or resetIdentity). */
  private async remoteRegistrationId(address: ProtocolAddress): Promise<number> {
    const key = addressKey(address.name(), address.deviceId());
    let id = this.registrationIds.get(key);
    if (id === undefined) {
      id = (await this.signal.sessions.getSession(address))?.remoteRegistrationId() ?? 0;
      this.registrationIds.set(key, id);
    }
    return id;
  }

  /** Fetches bundles and starts sessions (PQXDH) with one or every device of `uuid` (never this device itself). */
  private async startSessions(uuid: string, deviceId: number | "*"): Promise<void> {
    let bundle: PreKeyBundleResponse;
    try {
      bundle = await this.api.preKeyBundle(uuid, deviceId);
    } catch (error) {
      if (error instanceof ApiError && error.code === "not_found" && deviceId !== "*") return;
      throw error;
    }
    const identityKey = PublicKey.deserialize(bytes(bundle.identityKey));
    if (uuid !== this.local.uuid) await this.checkKeyLog(uuid, identityKey.serialize());
    const me = ProtocolAddress.new(this.local.uuid, this.local.deviceId);
    for (const d of bundle.devices) {
      if (uuid === this.local.uuid && d.deviceId === this.local.deviceId) continue;
      const badKey = unsignedDeviceKey(identityKey, d);
      if (badKey) {
        // Keys the account did not sign: the server (or its disk) changed them. Named, not a raw libsignal error.
        this.emit("badDeviceKeys", { uuid, deviceId: d.deviceId, key: badKey });
        throw new BadDeviceKeysError(uuid, d.deviceId, badKey);
      }
      const pre = PreKeyBundle.new(
        d.registrationId,
        d.deviceId,
        d.preKey?.keyId ?? null,
        d.preKey ? PublicKey.deserialize(bytes(d.preKey.publicKey)) : null,
        d.signedPreKey.keyId,
        PublicKey.deserialize(bytes(d.signedPreKey.publicKey)),
        bytes(d.signedPreKey.signature),
        identityKey,
        d.pqPreKey.keyId,
        KEMPublicKey.deserialize(bytes(d.pqPreKey.publicKey)),
        bytes(d.pqPreKey.signature),
      );
      // Record the key (and any change) before libsignal checks trust.
      await this.signal.identities.saveIdentity(ProtocolAddress.new(uuid, d.deviceId), identityKey);
      // Refused, but the new key stays recorded (pending, blocked) for safetyNumber and verify.
      if (this.store.getIdentity(uuid)?.blocked) throw refusedIdentityChange(this.store, uuid);
      await processPreKeyBundle(pre, ProtocolAddress.new(uuid, d.deviceId), me, this.signal.sessions, this.signal.identities);
      this.registrationIds.set(addressKey(uuid, d.deviceId), d.registrationId);
    }
  }

  private sealedConnection(): Socket<Record<string, never>, SealedClientToServerEvents> {
    if (!this.sealedSocket) {
      const socket = io(new URL("/sealed", this.local.serverUrl).toString(), { forceNew: true, transports: ["websocket"] });
      // The server closes idle or refused /sealed sockets and they do not reconnect: the next send opens a new one.
      socket.on("disconnect", (reason) => {
        if (reason !== "io server disconnect") return;
        socket.close();
        if (this.sealedSocket === socket) this.sealedSocket = null;
      });
      this.sealedSocket = socket;
    }
    return this.sealedSocket;
  }

  /** Sends the same ciphertexts with the same key until answered (see send-retry.ts), over the socket when connected. */
  private async deliver(uuid: string, messages: OutgoingMessage[], accessKey: string | null, idempotencyKey: string): Promise<SendMessagesResponse> {
    if (!messages.length) throw new ApiError(409, { code: "mismatched_devices", message: "no devices", missingDevices: [], extraDevices: [] });
    const timeoutMs = this.sendRetry.attemptTimeoutMs;
    return withSendRetry(async () => {
      if (accessKey !== null) {
        if (this.socket?.connected) {
          const request = { destination: uuid, messages, accessKey, idempotencyKey };
          const result = (await this.sealedConnection().timeout(timeoutMs).emitWithAck("send", request)) as SocketResult<SendMessagesResponse>;
          if (result.ok) return result.value;
          throw apiError(result.status, result.error);
        }
        return this.api.sendSealed(uuid, { messages, idempotencyKey }, accessKey);
      }
      if (this.socket?.connected) {
        const result = (await this.socket.timeout(timeoutMs).emitWithAck("send", { destination: uuid, messages, idempotencyKey })) as SocketResult<SendMessagesResponse>;
        if (result.ok) return result.value;
        throw apiError(result.status, result.error);
      }
      return this.api.sendMessages(uuid, { messages, idempotencyKey });
    }, this.sendRetry);
  }

  // ----------------------------------------------------------- receiving

  /**
   * Fetches the stored queue over REST and processes it (for a device that
   * does not keep a socket open). @returns how many envelopes were processed
   */
  async poll(): Promise<number> {
    let total = 0;
    for (;;) {
      const page = await this.api.fetchMessages();
      await this.processEnvelopes(page.envelopes);
      total += page.envelopes.length;
      if (!page.more) return total;
    }
  }

  /**
   * Decrypts envelopes in the order given, each in its own transaction,
   * emits their events, then acknowledges them. The socket calls this; so
   * does {@link poll}, and an app with its own transport may too.
   */
  async processEnvelopes(batch: Envelope[]): Promise<void> {
    // Committed with whatever else is queued (one fsync); a savepoint per envelope.
    const { results, identityChanges } = await this.tasks.run(async () => {
      const out: ReceiveResult[] = [];
      for (const envelope of batch) out.push(await this.receiveOne(envelope));
      // Key changes these envelopes made are told before their messages.
      return { results: out, identityChanges: this.identityChanges.take() };
    });
    for (const change of identityChanges) this.emit("identityChanged", change);
    for (const result of results) {
      switch (result.kind) {
        case "message":
          this.emit("message", result.message);
          if (this.sendReceipts && !result.message.outgoing) this.queueReceipt(result.message.from, result.message.timestamp);
          break;
        case "receipt":
          this.emit("deliveryReceipt", result.receipt);
          break;
        case "group":
          this.emit("groupUpdated", result.update);
          break;
        case "failed":
          this.emit("decryptionFailed", result.failure);
          break;
        case "skipped":
          break;
        default:
          missingCase(result);
      }
    }
    await this.acknowledge(batch.map((e) => e.id));
    // Keys of new contacts (PreKey messages, sealed-sender certificates) are checked after the fact, off the receive path.
    if (this.keyLog) {
      const senders = new Set(results.flatMap((r) => (r.kind === "message" ? [r.message.from] : r.kind === "receipt" ? [r.receipt.from] : r.kind === "group" ? [r.update.by] : [])));
      senders.delete(this.local.uuid);
      for (const uuid of senders) {
        const known = this.store.getIdentity(uuid);
        if (known && this.keyLog.isDue(uuid, known.publicKey)) this.inBackground(this.checkKeyLog(uuid, known.publicKey));
      }
    }
    if (this.receiptDelayMs <= 0) this.flushReceipts();
    else this.receiptTimer ??= setTimeout(() => this.flushReceipts(), this.receiptDelayMs);
  }

  private queueReceipt(from: string, timestamp: number): void {
    this.pendingReceipts.set(from, [...(this.pendingReceipts.get(from) ?? []), timestamp]);
  }

  /** Sends every held receipt now, one message per sender (100 timestamps each at most). */
  private flushReceipts(): void {
    if (this.receiptTimer) clearTimeout(this.receiptTimer);
    this.receiptTimer = null;
    for (const [uuid, timestamps] of this.pendingReceipts) {
      for (let i = 0; i < timestamps.length; i += 100) {
        const receipt = { timestamps: timestamps.slice(i, i + 100) };
        this.inBackground(this.sendContent(uuid, { v: 1, timestamp: Date.now(), receipt, accessKey: this.local.accessKey }));
      }
    }
    this.pendingReceipts.clear();
  }

  private async acknowledge(ids: string[]): Promise<void> {
    if (!ids.length) return;
    if (this.socket?.connected) {
      const result = (await this.socket.emitWithAck("ack", { ids })) as SocketResult<unknown>;
      if (!result.ok) throw apiError(result.status, result.error);
      return;
    }
    await this.api.ack(ids);
  }

  /**
   * Decrypts one envelope and stores its result, the advanced session and
   * its id (inside the batch transaction, in a savepoint of its own): a crash
   * before the ack means a redelivery, recognised by id and not shown twice.
   * Events are emitted by the caller, after the commit.
   */
  private async receiveOne(envelope: Envelope): Promise<ReceiveResult> {
    if (this.store.hasProcessed(envelope.id)) return { kind: "skipped" };
    let from = envelope.sourceUuid;
    try {
      return await this.store.transaction(async (): Promise<ReceiveResult> => {
        const opened = await this.open(envelope);
        from = opened.from;
        let content: Content;
        try {
          content = decodeContent(opened.plaintext);
        } catch (error) {
          throw failure(DecryptionFailureReason.InvalidContent, "invalid content", error);
        }
        this.store.markProcessed(envelope.id, Date.now());
        return this.handleContent(envelope, opened, content);
      });
    } catch (error) {
      // The failed envelope's changes are rolled back; remember its id so a redelivery is not retried.
      this.store.markProcessed(envelope.id, Date.now());
      // A refused sealed message names its claimed sender (the certificate's, which the refusal is about).
      from ??= (error as { from?: string } | null)?.from;
      return { kind: "failed", failure: { envelopeId: envelope.id, ...(from ? { from } : {}), reason: reasonFor(error), error } };
    }
  }

  /** Decrypts an envelope: a sealed one is unsealed first, and its sender read from the validated certificate. */
  private async open(envelope: Envelope): Promise<{ from: string; fromDevice: number; plaintext: Uint8Array; sealed: boolean; senderKey: boolean }> {
    const s = this.signal;
    const me = ProtocolAddress.new(this.local.uuid, this.local.deviceId);
    if (envelope.type !== "sealed") {
      const from = envelope.sourceUuid;
      const fromDevice = envelope.sourceDeviceId;
      if (!from || !fromDevice) throw failure(DecryptionFailureReason.UnknownSender, "no sender");
      const address = ProtocolAddress.new(from, fromDevice);
      const plaintext =
        envelope.type === "prekey"
          ? await this.decryptPreKey(PreKeySignalMessage.deserialize(bytes(envelope.content)), address, me)
          : await signalDecrypt(SignalMessage.deserialize(bytes(envelope.content)), address, me, s.sessions, s.identities);
      return { from, fromDevice, plaintext, sealed: false, senderKey: false };
    }
    const usmc = await sealedSenderDecryptToUsmc(bytes(envelope.content), s.identities);
    const certificate = usmc.senderCertificate();
    const root = this.sealed.trustRoot();
    if (!root || !certificate.validate(root, Date.now())) throw failure(DecryptionFailureReason.InvalidCertificate, "sender certificate not valid");
    const from = certificate.senderUuid();
    const fromDevice = certificate.senderDeviceId();
    const address = ProtocolAddress.new(from, fromDevice);
    // Read before decrypting: a PreKey message saves the key it carries, which is the certificate's when the server
    // minted both.
    const knownBefore = this.store.getIdentity(from);
    let plaintext: Uint8Array;
    const type = usmc.msgType();
    switch (type) {
      case CiphertextMessageType.PreKey:
        plaintext = await this.decryptPreKey(PreKeySignalMessage.deserialize(usmc.contents()), address, me);
        break;
      case CiphertextMessageType.Whisper:
        plaintext = await signalDecrypt(SignalMessage.deserialize(usmc.contents()), address, me, s.sessions, s.identities);
        break;
      case CiphertextMessageType.SenderKey:
        plaintext = await groupDecrypt(address, s.senderKeys, usmc.contents());
        break;
      default:
        throw failure(DecryptionFailureReason.InvalidMessage, `unexpected sealed message type ${type}`);
    }
    // The certificate must name the key this device knew for the sender (a server could mint one for another key);
    // for a sender never seen, the key their first message carries, as for an unsealed first message.
    const certificateKey = Buffer.from(certificate.key().serialize());
    if (knownBefore && !certificateKey.equals(Buffer.from(knownBefore.publicKey))) {
      throw Object.assign(failure(DecryptionFailureReason.CertificateKeyMismatch, "the certificate names another key than the one known for its sender"), { from });
    }
    const known = this.store.getIdentity(from);
    if (!known || !certificateKey.equals(Buffer.from(known.publicKey))) {
      throw failure(DecryptionFailureReason.InvalidCertificate, "the certificate's key is not the sender's identity key");
    }
    return { from, fromDevice, plaintext, sealed: true, senderKey: type === CiphertextMessageType.SenderKey };
  }

  private async decryptPreKey(message: PreKeySignalMessage, address: ProtocolAddress, me: ProtocolAddress): Promise<Uint8Array> {
    const s = this.signal;
    // A PreKey message may replace the session, and with it the peer's registration id.
    this.registrationIds.delete(addressKey(address.name(), address.deviceId()));
    return signalDecryptPreKey(message, address, me, s.sessions, s.identities, s.preKeys, s.signedPreKeys, s.kyberPreKeys);
  }

  /** Applies decrypted content: access keys, sender keys, group changes, sent transcripts, receipts, messages. */
  private async handleContent(
    envelope: Envelope,
    opened: { from: string; fromDevice: number; sealed: boolean; senderKey: boolean },
    content: Content,
  ): Promise<ReceiveResult> {
    const { from, fromDevice, sealed } = opened;
    const me = this.local.uuid;
    const own = from === me;
    if (content.accessKey && !own) this.sealed.rememberAccessKey(from, content.accessKey);
    if (content.senderKey) {
      const distribution = SenderKeyDistributionMessage.deserialize(bytes(content.senderKey.message));
      await processSenderKeyDistributionMessage(ProtocolAddress.new(from, fromDevice), distribution, this.signal.senderKeys);
    }
    if (content.groupUpdate) {
      const current = this.groups.get(content.groupUpdate.id);
      const change = applyGroupUpdate(current, content.groupUpdate, from, me);
      if (!change) throw failure(DecryptionFailureReason.NotAGroupMember, "group change refused: not from an admin, or stale");
      this.groups.save(change.group);
      // Someone left: this device's sender key for the group is replaced before its next message.
      if (change.removed.length) this.groups.rotate(change.group.id);
      const left = !change.group.members.includes(me);
      return { kind: "group", update: { group: change.group, by: from, added: change.added, removed: change.removed, left } };
    }
    // A group message must come from a current member, through the group's sender key or a sync from this account.
    const groupId = content.group?.id;
    if (opened.senderKey && !groupId) throw failure(DecryptionFailureReason.NotAGroupMember, "a sender-key message without a group");
    if (groupId) {
      const group = this.groups.get(groupId);
      if (!group || !group.members.includes(from) || (!opened.senderKey && !(own && content.sync))) {
        throw failure(DecryptionFailureReason.NotAGroupMember, "group message from a non-member");
      }
    }
    if (content.receipt) return { kind: "receipt", receipt: { from, fromDevice, timestamps: content.receipt.timestamps } };
    if (content.text === undefined && !content.attachment) return { kind: "skipped" };
    const outgoing = own && content.sync !== undefined;
    if (own && !outgoing) return { kind: "skipped" };
    const conversation = groupId ? groupConversation(groupId) : outgoing ? content.sync?.destination : from;
    if (!conversation) return { kind: "skipped" };
    // The same message in a second envelope (a sender's retry that was stored twice): shown once.
    if (!this.dedup.firstSight(from, fromDevice, content)) return { kind: "skipped" };
    const text = content.text ?? "";
    this.store.addMessage({
      id: envelope.id,
      peer: conversation,
      direction: outgoing ? "out" : "in",
      author: from,
      senderDeviceId: fromDevice,
      text,
      timestamp: content.timestamp,
      storedAt: Date.now(),
      ...(content.attachment ? { attachment: content.attachment } : {}),
    });
    return {
      kind: "message",
      message: {
        envelopeId: envelope.id,
        from,
        fromDevice,
        conversation,
        ...(groupId ? { group: groupId } : {}),
        text,
        ...(content.attachment ? { attachment: content.attachment } : {}),
        timestamp: content.timestamp,
        sealed,
        outgoing,
      },
    };
  }
}

/** Which of a bundle device's signed keys the account identity key did not sign, if any (libsignal's signature check). */
function unsignedDeviceKey(identityKey: PublicKey, d: PreKeyBundleResponse["devices"][number]): "signed_pre_key" | "kyber_pre_key" | null {
  if (!identityKey.verify(bytes(d.signedPreKey.publicKey), bytes(d.signedPreKey.signature))) return "signed_pre_key";
  if (!identityKey.verify(bytes(d.pqPreKey.publicKey), bytes(d.pqPreKey.signature))) return "kyber_pre_key";
  return null;
}

function failure(reason: DecryptionFailureReason, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? {} : { cause }), { reason });
}

function reasonFor(error: unknown): DecryptionFailureReason {
  const explicit = (error as { reason?: DecryptionFailureReason }).reason;
  if (explicit) return explicit;
  if ((error as { code?: unknown }).code === "missing_pre_key") return DecryptionFailureReason.MissingPreKey;
  if (error instanceof LibSignalErrorBase) {
    switch (error.code) {
      case ErrorCode.DuplicatedMessage:
        return DecryptionFailureReason.Duplicate;
      case ErrorCode.UntrustedIdentity:
        return DecryptionFailureReason.UntrustedIdentity;
      case ErrorCode.InvalidSession:
        return DecryptionFailureReason.NoSession;
      case ErrorCode.InvalidSenderKeySession:
        return DecryptionFailureReason.NoSenderKey;
      default:
        return DecryptionFailureReason.InvalidMessage;
    }
  }
  return DecryptionFailureReason.InvalidMessage;
}
