import { EventEmitter } from "node:events";
import { randomBytes, randomInt, randomUUID } from "node:crypto";
import {
  CiphertextMessageType,
  ErrorCode,
  KEMPublicKey,
  LibSignalErrorBase,
  PreKeyBundle,
  PreKeySignalMessage,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SignalMessage,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import { io, type Socket } from "socket.io-client";
import type {
  ClientToServerEvents,
  Envelope,
  OutgoingMessage,
  PreKeyBundleResponse,
  SendMessagesResponse,
  ServerToClientEvents,
  SocketResult,
} from "@zimchat/protocol";
import { missingCase } from "@zimchat/protocol";
import { decodeContent, encodeContent, type Content } from "./content.js";
import { ApiError, DecryptionFailureReason, UntrustedIdentityError } from "./errors.js";
import { HttpApi } from "./http-api.js";
import { defaultKeyPolicy, newKyberPreKey, newOneTimeKeys, newSignedPreKey, pruneReplacedKeys, type KeyPolicy } from "./keys.js";
import { matchesSafetyNumber, safetyNumber, type SafetyNumber } from "./safety-number.js";
import type { DeviceStore, LocalDevice } from "./store/device-store.js";
import { signalStores, type SignalStores } from "./store/signal-stores.js";
import { trustOnFirstUse, type TrustPolicy } from "./trust.js";
import { StoreQueue } from "./task-queue.js";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const bytes = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;

/** A decrypted text message. */
export interface MessageEvent {
  envelopeId: string;
  from: string;
  fromDevice: number;
  text: string;
  /** The sender's timestamp. */
  timestamp: number;
}

/** What processing one envelope produced. */
type ReceiveResult =
  | { kind: "message"; message: MessageEvent }
  | { kind: "receipt"; receipt: ZimClientEvents["deliveryReceipt"][0] }
  | { kind: "failed"; failure: ZimClientEvents["decryptionFailed"][0] }
  | { kind: "skipped" };

/** The events a {@link ZimClient} emits. */
export interface ZimClientEvents {
  message: [MessageEvent];
  /** A peer's identity key changed; `blocked` when sending to them now needs re-verification. */
  identityChanged: [{ uuid: string; blocked: boolean }];
  /** The peer's device decrypted the messages with these timestamps. */
  deliveryReceipt: [{ from: string; fromDevice: number; timestamps: number[] }];
  /** An envelope could not be decrypted; it is acknowledged and dropped. */
  decryptionFailed: [{ envelopeId: string; from?: string; reason: DecryptionFailureReason; error: unknown }];
  /** The stored queue has been delivered after connecting. */
  queueEmpty: [];
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
  /** Send an encrypted delivery receipt for received text messages. @default true */
  sendReceipts?: boolean;
}

/** Options for {@link ZimClient.register}. */
export interface RegisterOptions extends ZimClientOptions {
  serverUrl: string;
  username: string;
  inviteToken?: string;
}

/**
 * An end-to-end encrypted ZimChat device: registration, sessions, sending
 * and receiving text, safety numbers. Every protocol operation is
 * libsignal's; the homeserver sees only ciphertext.
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
  private readonly keyPolicy: KeyPolicy;
  private readonly sendReceipts: boolean;
  /**
   * Store work runs one task at a time (libsignal's stores are async; SQLite
   * transactions must not interleave), group-committed.
   */
  private readonly tasks: StoreQueue;
  private socket: Socket<ServerToClientEvents, ClientToServerEvents> | null = null;
  private readonly registrationIds = new Map<string, number>();
  /** Receipts and key upkeep still running; `close` waits for them. */
  private readonly background = new Set<Promise<unknown>>();

  constructor(options: ZimClientOptions) {
    super();
    this.store = options.store;
    this.tasks = new StoreQueue(this.store);
    const local = this.store.getLocal();
    if (!local) throw new Error("the store holds no registered device: use ZimClient.register");
    this.api = new HttpApi(local.serverUrl, { uuid: local.uuid, deviceId: local.deviceId, password: local.password });
    this.keyPolicy = { ...defaultKeyPolicy, ...options.keyPolicy };
    this.sendReceipts = options.sendReceipts ?? true;
    this.signal = signalStores(this.store, options.trustPolicy ?? trustOnFirstUse, (uuid, blocked) => this.emit("identityChanged", { uuid, blocked }));
  }

  /**
   * Creates an account: a new identity key pair, registration id, device
   * password, signed pre-key, Kyber last-resort key, and a first batch of
   * one-time keys, all generated here and kept in `store`.
   */
  static async register(options: RegisterOptions): Promise<ZimClient> {
    const { store } = options;
    if (store.getLocal()?.uuid) throw new Error("this store already holds a registered device");
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
    };
    // One transaction: a refused registration leaves the store as it was.
    await store.transaction(async () => {
      store.setLocal(pending);
      const registered = await new HttpApi(options.serverUrl).register({
        username: options.username,
        password: pending.password,
        registrationId: pending.registrationId,
        identityKey: b64(identity.getPublicKey().serialize()),
        signedPreKey: newSignedPreKey(store, identity),
        pqLastResortPreKey: newKyberPreKey(store, identity, true),
        ...(options.inviteToken ? { inviteToken: options.inviteToken } : {}),
      });
      store.setLocal({ ...store.getLocal()!, uuid: registered.uuid, deviceId: registered.deviceId });
    });
    const client = new ZimClient(options);
    await client.maintainKeys();
    return client;
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
      this.store.setLocal({ ...this.local, identityPrivateKey: identity.serialize(), registrationId });
      this.store.clearSessions();
      this.registrationIds.clear();
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
    this.inBackground(this.maintainKeys());
  }

  private inBackground(work: Promise<unknown>): void {
    const tracked = work.catch((error: unknown) => this.emit("warning", error)).finally(() => this.background.delete(tracked));
    this.background.add(tracked);
  }

  /** Closes the socket. */
  disconnect(): void {
    this.socket?.close();
    this.socket = null;
  }

  /** Lets background work (receipts, key upkeep) finish, then closes the socket and the store. */
  async close(): Promise<void> {
    // Take no new envelopes (unacknowledged ones come back next time), finish what is running.
    this.socket?.off("envelopes");
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
   * Encrypts a text for every device of the recipient and sends it. Refused
   * with {@link UntrustedIdentityError} when the recipient's key changed
   * after it was verified. Never sends anything unencrypted.
   */
  async sendText(to: string, text: string): Promise<{ timestamp: number; envelopes: SendMessagesResponse["envelopes"] }> {
    const uuid = await this.resolve(to);
    const timestamp = Date.now();
    const result = await this.sendContent(uuid, { v: 1, text, timestamp }, () =>
      this.store.addMessage({ id: randomUUID(), peer: uuid, direction: "out", senderDeviceId: this.local.deviceId, text, timestamp, storedAt: Date.now() }),
    );
    return { timestamp, envelopes: result.envelopes };
  }

  /** The stored conversation with a user, oldest first. */
  async conversation(user: string, limit?: number): Promise<ReturnType<DeviceStore["messages"]>> {
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

  /** Whether a user is verified, and whether sending to them is blocked. */
  async trustState(user: string): Promise<{ verified: boolean; blocked: boolean } | null> {
    const known = this.store.getIdentity(await this.resolve(user));
    return known ? { verified: known.verified, blocked: known.blocked } : null;
  }

  /**
   * Keeps pre-keys healthy: refills one-time keys when the server holds
   * fewer than `refillBelow`, rotates the signed and last-resort keys when
   * due, and drops replaced ones after the grace period.
   */
  async maintainKeys(now = Date.now()): Promise<void> {
    const counts = await this.api.keyCount();
    await this.tasks.run(async () => {
      const identity = PrivateKey.deserialize(this.local.identityPrivateKey);
      const { batchSize, refillBelow, rotateEveryMs, graceMs } = this.keyPolicy;
      const upload = newOneTimeKeys(this.store, identity, counts.ecCount < refillBelow ? batchSize : 0, counts.pqCount < refillBelow ? batchSize : 0);
      const rotatedAt = Number(this.store.getValue("signedPreKeyRotatedAt") ?? 0);
      const body = { ...(upload.preKeys?.length ? { preKeys: upload.preKeys } : {}), ...(upload.pqPreKeys?.length ? { pqPreKeys: upload.pqPreKeys } : {}) };
      const rotation = now - rotatedAt >= rotateEveryMs ? { signedPreKey: newSignedPreKey(this.store, identity), pqLastResortPreKey: newKyberPreKey(this.store, identity, true) } : {};
      if (Object.keys(body).length || Object.keys(rotation).length) await this.api.uploadKeys({ ...body, ...rotation });
      pruneReplacedKeys(this.store, graceMs, now);
    });
  }

  /**
   * Encrypts and sends content, retrying after 409/410. `record` runs in the
   * same store transaction as the first encryption.
   */
  private async sendContent(uuid: string, content: Content, record?: () => void): Promise<SendMessagesResponse> {
    const known = this.store.getIdentity(uuid);
    if (known?.blocked) throw new UntrustedIdentityError(uuid);
    const padded = encodeContent(content);
    for (let attempt = 0; ; attempt++) {
      const messages = await this.tasks.run(async () => {
        const encrypted = await this.encryptForAll(uuid, padded);
        if (attempt === 0) record?.();
        return encrypted;
      });
      try {
        return await this.deliver(uuid, messages);
      } catch (error) {
        if (!(error instanceof ApiError) || attempt >= 3) throw error;
        if (error.code === "mismatched_devices") {
          await this.tasks.run(async () => {
            for (const id of error.body.extraDevices ?? []) this.forgetSession(`${uuid}.${id}`);
            for (const id of error.body.missingDevices ?? []) await this.startSessions(uuid, id);
          });
        } else if (error.code === "stale_devices") {
          await this.tasks.run(async () => {
            for (const id of error.body.staleDevices ?? []) {
              this.forgetSession(`${uuid}.${id}`);
              await this.startSessions(uuid, id);
            }
          });
        } else {
          throw error;
        }
      }
    }
  }

  /** One ciphertext per device of `uuid` this device has (or now starts) a session with. */
  private async encryptForAll(uuid: string, padded: Uint8Array<ArrayBuffer>): Promise<OutgoingMessage[]> {
    if (this.store.getIdentity(uuid)?.blocked) throw new UntrustedIdentityError(uuid);
    let devices = this.store.sessionDevices(uuid);
    if (!devices.length && uuid !== this.local.uuid) {
      await this.startSessions(uuid, "*");
      devices = this.store.sessionDevices(uuid);
    }
    const local = this.local;
    const me = ProtocolAddress.new(local.uuid, local.deviceId);
    const out: OutgoingMessage[] = [];
    for (const deviceId of devices) {
      const address = ProtocolAddress.new(uuid, deviceId);
      let message;
      try {
        message = await signalEncrypt(padded, address, me, this.signal.sessions, this.signal.identities);
      } catch (error) {
        if (error instanceof LibSignalErrorBase && error.code === ErrorCode.UntrustedIdentity) throw new UntrustedIdentityError(uuid);
        throw error;
      }
      out.push({
        type: message.type() === CiphertextMessageType.PreKey ? "prekey" : "whisper",
        destinationDeviceId: deviceId,
        destinationRegistrationId: await this.remoteRegistrationId(address),
        content: b64(message.serialize()),
      });
    }
    return out;
  }

  private forgetSession(address: string): void {
    this.store.deleteSession(address);
    this.registrationIds.delete(address);
  }

  /** A peer device's registration id, from its session (cached: sessions are only replaced through startSessions or resetIdentity). */
  private async remoteRegistrationId(address: ProtocolAddress): Promise<number> {
    const key = `${address.name()}.${address.deviceId()}`;
    let id = this.registrationIds.get(key);
    if (id === undefined) {
      id = (await this.signal.sessions.getSession(address))?.remoteRegistrationId() ?? 0;
      this.registrationIds.set(key, id);
    }
    return id;
  }

  /** Fetches bundles and starts sessions (PQXDH) with one or every device of `uuid`. */
  private async startSessions(uuid: string, deviceId: number | "*"): Promise<void> {
    let bundle: PreKeyBundleResponse;
    try {
      bundle = await this.api.preKeyBundle(uuid, deviceId);
    } catch (error) {
      if (error instanceof ApiError && error.code === "not_found" && deviceId !== "*") return;
      throw error;
    }
    const identityKey = PublicKey.deserialize(bytes(bundle.identityKey));
    const me = ProtocolAddress.new(this.local.uuid, this.local.deviceId);
    for (const d of bundle.devices) {
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
      if (this.store.getIdentity(uuid)?.blocked) throw new UntrustedIdentityError(uuid);
      await processPreKeyBundle(pre, ProtocolAddress.new(uuid, d.deviceId), me, this.signal.sessions, this.signal.identities);
      this.registrationIds.set(`${uuid}.${d.deviceId}`, d.registrationId);
    }
  }

  private async deliver(uuid: string, messages: OutgoingMessage[]): Promise<SendMessagesResponse> {
    if (!messages.length) throw new ApiError(409, { code: "mismatched_devices", message: "no devices", missingDevices: [], extraDevices: [] });
    if (this.socket?.connected) {
      const result = (await this.socket.emitWithAck("send", { destination: uuid, messages })) as SocketResult<SendMessagesResponse>;
      if (result.ok) return result.value;
      throw new ApiError(result.status, result.error);
    }
    return this.api.sendMessages(uuid, { messages });
  }

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
    const results = await this.tasks.run(async () => {
      const out: ReceiveResult[] = [];
      for (const envelope of batch) out.push(await this.receiveOne(envelope));
      return out;
    });
    const receipts = new Map<string, number[]>();
    for (const result of results) {
      switch (result.kind) {
        case "message":
          this.emit("message", result.message);
          if (this.sendReceipts) receipts.set(result.message.from, [...(receipts.get(result.message.from) ?? []), result.message.timestamp]);
          break;
        case "receipt":
          this.emit("deliveryReceipt", result.receipt);
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
    for (const [uuid, timestamps] of receipts) {
      this.inBackground(this.sendContent(uuid, { v: 1, timestamp: Date.now(), receipt: { timestamps: timestamps.slice(0, 100) } }));
    }
  }

  private async acknowledge(ids: string[]): Promise<void> {
    if (!ids.length) return;
    if (this.socket?.connected) {
      const result = (await this.socket.emitWithAck("ack", { ids })) as SocketResult<unknown>;
      if (!result.ok) throw new ApiError(result.status, result.error);
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
    const from = envelope.sourceUuid;
    const fromDevice = envelope.sourceDeviceId;
    try {
      if (!from || !fromDevice) throw Object.assign(new Error("no sender"), { reason: DecryptionFailureReason.UnknownSender });
      return await this.store.transaction(async (): Promise<ReceiveResult> => {
        const plaintext = await this.decrypt(envelope, from, fromDevice);
        let content: Content;
        try {
          content = decodeContent(plaintext);
        } catch (error) {
          throw Object.assign(new Error("invalid content", { cause: error }), { reason: DecryptionFailureReason.InvalidContent });
        }
        this.store.markProcessed(envelope.id, Date.now());
        if (content.receipt) return { kind: "receipt", receipt: { from, fromDevice, timestamps: content.receipt.timestamps } };
        if (content.text === undefined) return { kind: "skipped" };
        this.store.addMessage({ id: envelope.id, peer: from, direction: "in", senderDeviceId: fromDevice, text: content.text, timestamp: content.timestamp, storedAt: Date.now() });
        return { kind: "message", message: { envelopeId: envelope.id, from, fromDevice, text: content.text, timestamp: content.timestamp } };
      });
    } catch (error) {
      // The failed envelope's changes are rolled back; remember its id so a redelivery is not retried.
      this.store.markProcessed(envelope.id, Date.now());
      return { kind: "failed", failure: { envelopeId: envelope.id, ...(from ? { from } : {}), reason: reasonFor(error), error } };
    }
  }

  private async decrypt(envelope: Envelope, from: string, fromDevice: number): Promise<Uint8Array> {
    const address = ProtocolAddress.new(from, fromDevice);
    const me = ProtocolAddress.new(this.local.uuid, this.local.deviceId);
    const s = this.signal;
    if (envelope.type === "prekey") {
      // A PreKey message may replace the session, and with it the peer's registration id.
      this.registrationIds.delete(`${from}.${fromDevice}`);
      return signalDecryptPreKey(PreKeySignalMessage.deserialize(bytes(envelope.content)), address, me, s.sessions, s.identities, s.preKeys, s.signedPreKeys, s.kyberPreKeys);
    }
    return signalDecrypt(SignalMessage.deserialize(bytes(envelope.content)), address, me, s.sessions, s.identities);
  }

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
      default:
        return DecryptionFailureReason.InvalidMessage;
    }
  }
  return DecryptionFailureReason.InvalidMessage;
}
