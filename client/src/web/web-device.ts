import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import QRCode from "qrcode";
import {
  ApiError,
  bridgeBanner,
  type AttachmentPointer,
  type StoredAttachmentPointer,
  type StoredMessage,
  type ZimClientOptions,
} from "../index.js";
import { LineOutbox } from "../cli/chat-outbox.js";
import { CliError, toCliError, type CliErrorCode } from "../cli/cli-error.js";
import { registerDevice } from "../cli/commands/register.js";
import { Output } from "../cli/output.js";
import { Profile } from "../cli/profile.js";
import { openSession, type OpenSession, type Target } from "../cli/session.js";
import { startLink, type PendingLink } from "./web-link.js";
import type {
  WebAttachment,
  WebConversation,
  WebCreateGroupResponse,
  WebEvent,
  WebFileResponse,
  WebLinkCode,
  WebMe,
  WebMessage,
  WebMessageStatus,
  WebRegisterRequest,
  WebSafetyNumber,
  WebSendResponse,
} from "./api.js";

/** A failure the API answers with `status` and `{ error: code, message }`. */
export class WebApiError extends Error {
  override name = "WebApiError";

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const cliStatus: Record<CliErrorCode, number> = {
  invalid_argument: 400,
  insecure_http: 400,
  not_registered: 409,
  already_registered: 409,
  unknown_user: 404,
  federation_unavailable: 502,
  server_binding_refused: 409,
  unknown_contact: 404,
  unreachable: 502,
  untrusted_identity: 409,
  safety_number_mismatch: 422,
  unknown_group: 404,
  ambiguous_group: 409,
  group_refused: 409,
  unknown_message: 404,
  not_primary: 409,
  cancelled: 409,
  server_error: 502,
  internal: 500,
};

/**
 * The API's answer for anything thrown: the CLI's error codes and messages
 * (which name people by username and never carry secrets); a homeserver's
 * 4xx keeps its status and code (except 401/403, which would read as the
 * daemon's own refusals), any other homeserver failure is a 502.
 */
export function toWebApiError(error: unknown, context: Parameters<typeof toCliError>[1] = {}): WebApiError {
  if (error instanceof WebApiError) return error;
  const failure = toCliError(error, context);
  // The page's name for it: a verified contact's key changed, and sending waits for an accept.
  if (failure.code === "untrusted_identity")
    return new WebApiError(409, "identity_changed", failure.message, { cause: error });
  const cause = failure.cause;
  if (failure.code === "server_error" && cause instanceof ApiError) {
    const status =
      cause.status >= 400 && cause.status < 500 && cause.status !== 401 && cause.status !== 403 ? cause.status : 502;
    return new WebApiError(status, cause.code, failure.message, { cause: error });
  }
  return new WebApiError(cliStatus[failure.code], failure.code, failure.message, { cause: error });
}

/** What {@link WebDevice} is given. */
export interface WebDeviceOptions {
  /** The profile directory. */
  profile: string;
  /** Where warnings go (text lines). @default process.stderr */
  log?: NodeJS.WritableStream;
  /**
   * How long a send keeps trying an unreachable homeserver before the message is queued.
   * @default { maxMs: 4000, attemptTimeoutMs: 10000 }
   */
  sendRetry?: ZimClientOptions["sendRetry"];
  /**
   * Waits between retries of queued messages and of connecting: the first, doubling up to the last.
   * @default { first: 1000, max: 15000 }
   */
  retryMs?: { first: number; max: number };
  /** Allow a plain http:// homeserver that is not on this machine at registration. @default false */
  allowInsecureHttp?: boolean;
}

/** A message typed while the homeserver was unreachable (or waiting behind one). */
interface QueuedEntry {
  id: string;
  text: string;
  at: number;
  /** Settles the `POST /api/send` that submitted it (absent for lines queued by an earlier run). */
  settle?: (result: { status: "sent" | "queued"; id: string } | { error: unknown }) => void;
  /** Whether its sender has been answered (`queued`): its later fate goes out as `status` events. */
  answered: boolean;
}

/** Per profile: which received messages were read, and which sent ones were delivered. */
interface WebStateFile {
  /** Per conversation: received messages stored up to this time (ms) are read. */
  readUpTo: Record<string, number>;
  /** Per conversation: timestamps of sent messages a recipient's device decrypted (the latest few hundred). */
  delivered: Record<string, number[]>;
  /**
   * Ids of history records of sends that failed (the SDK records a message
   * as it encrypts it, before the homeserver answers): a queued line's
   * failed attempts, hidden so that it shows once, as queued, then as sent.
   */
  hidden: string[];
}

const uuidPrefix = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
const maxDeliveredKept = 500;
const maxHiddenKept = 1000;
const nullStream = new Writable({ write: (_chunk, _encoding, done) => done() });

/**
 * The web daemon's device: the profile's {@link Session} (the terminal
 * chat's, with its contacts and outbox) for the lifetime of the daemon, and
 * the API's operations on it. It keeps connecting while the homeserver is
 * unreachable, and sends queued messages (the profile's outbox, shared with
 * `zimchat-chat chat`) once it answers. Emits `event` ({@link WebEvent}).
 */
export class WebDevice extends EventEmitter<{ event: [WebEvent] }> {
  private opened: OpenSession | null = null;
  private readonly profile: Profile;
  private readonly statePath: string;
  private state: WebStateFile;
  private readonly outboxes = new Map<string, { outbox: LineOutbox; entries: QueuedEntry[] }>();
  private online = false;
  /** A link to an existing account waiting for approval (`POST /api/link`). */
  private linking: PendingLink | null = null;
  private closed = false;
  private connectTimer: NodeJS.Timeout | null = null;
  private connectDelay: number;
  private readonly log: NodeJS.WritableStream;

  constructor(private readonly options: WebDeviceOptions) {
    super();
    this.profile = new Profile(options.profile);
    this.statePath = join(this.profile.dir, "web.json");
    this.state = { readUpTo: {}, delivered: {}, hidden: [] };
    this.log = options.log ?? process.stderr;
    this.connectDelay = this.retry.first;
  }

  private get retry(): { first: number; max: number } {
    return this.options.retryMs ?? { first: 1000, max: 15_000 };
  }

  /** Opens the profile's device when it has one (and starts connecting). */
  start(): void {
    if (this.profile.hasStore()) this.open();
  }

  private open(): void {
    const output = new Output(false, false, nullStream, this.log);
    const sendRetry = this.options.sendRetry ?? { maxMs: 4000, attemptTimeoutMs: 10_000 };
    this.opened = openSession(this.profile.dir, output, { sendRetry });
    if (existsSync(this.statePath)) {
      const stored = JSON.parse(readFileSync(this.statePath, "utf8")) as Partial<WebStateFile>;
      this.state = { readUpTo: stored.readUpTo ?? {}, delivered: stored.delivered ?? {}, hidden: stored.hidden ?? [] };
    }
    const { client } = this.opened.session;
    client.on("message", (m) => {
      const author = m.from;
      this.emit("event", {
        type: "message",
        conversation: m.conversation,
        message: {
          id: m.envelopeId,
          author,
          authorName: this.title(author),
          outgoing: m.outgoing,
          text: m.text,
          at: m.timestamp,
          status: m.outgoing ? "sent" : "received",
          ...(m.attachment ? { attachment: webAttachment(m.attachment) } : {}),
        },
      });
      this.emit("event", { type: "conversations" });
    });
    client.on("groupUpdated", ({ group }) => {
      this.emit("event", { type: "group", conversation: `group:${group.id}` });
      this.emit("event", { type: "conversations" });
    });
    client.on("bridgesChanged", ({ groupId }) => {
      this.emit("event", { type: "bridges", conversation: `group:${groupId}` });
      this.emit("event", { type: "conversations" });
    });
    client.on("identityChanged", ({ uuid, blocked }) => {
      this.emit("event", { type: "identityChanged", conversation: uuid, blocked });
      this.emit("event", { type: "conversations" });
    });
    client.on("deliveryReceipt", ({ from, timestamps }) => this.delivered(from, timestamps));
    client.on("connectionChanged", ({ connected }) => {
      this.setOnline(connected);
      // Back online: what waits is sent now, not at the outbox's next retry.
      if (connected) for (const { outbox } of this.outboxes.values()) void outbox.resume();
    });
    for (const conversation of this.profile.outbox.conversations()) this.outboxFor(conversation);
    this.connect();
  }

  /** Whether the device is connected to its homeserver now. */
  get isOnline(): boolean {
    return this.online;
  }

  private setOnline(online: boolean): void {
    if (online === this.online) return;
    this.online = online;
    this.emit("event", { type: "connection", online });
  }

  /** Connects (draining what waits); while the homeserver is unreachable, tries again with a growing wait. */
  private connect(): void {
    const opened = this.opened;
    if (!opened || this.closed) return;
    opened.session.client.connect().then(
      () => {
        this.connectDelay = this.retry.first;
        this.setOnline(opened.session.client.connected);
        for (const { outbox } of this.outboxes.values()) void outbox.resume();
      },
      (error: unknown) => {
        this.setOnline(false);
        if (this.closed) return;
        const failure = toCliError(error, opened.context);
        if (failure.code !== "unreachable") this.warn(`connecting failed: ${failure.message}`);
        this.connectTimer = setTimeout(() => {
          this.connectTimer = null;
          this.connect();
        }, this.connectDelay);
        this.connectDelay = Math.min(this.connectDelay * 2, this.retry.max);
      },
    );
  }

  private warn(message: string): void {
    this.log.write(`zimchat-chat web: ${message}\n`);
  }

  /** The open device. @throws WebApiError `not_registered` (409) */
  private get device(): OpenSession {
    if (!this.opened) throw new WebApiError(409, "not_registered", "this profile has no device yet: register first");
    return this.opened;
  }

  /** The open device, for the API's other modules (groups, linking). @throws WebApiError `not_registered` (409) */
  get active(): OpenSession {
    return this.device;
  }

  /**
   * `POST /api/link`: links this empty profile to an existing account; the
   * code to show now, `linked` or `linkFailed` events later. A second call
   * while one waits gets the same code.
   */
  async link(server: string): Promise<WebLinkCode> {
    if (this.opened) throw new WebApiError(409, "already_registered", `${this.profile.dir} already holds a device`);
    if (this.linking) return this.linking.code;
    const pending = await startLink(
      this.profile,
      server,
      { allowInsecureHttp: this.options.allowInsecureHttp ?? false },
      {
        linked: () => {
          this.linking = null;
          if (this.closed) return;
          this.open();
          this.emit("event", { type: "linked", me: this.me() as Extract<WebMe, { registered: true }> });
          this.emit("event", { type: "conversations" });
        },
        failed: (error) => {
          this.linking = null;
          this.emit("event", { type: "linkFailed", error: error.code, message: error.message });
        },
        warn: (message) => this.warn(message),
      },
    );
    this.linking = pending;
    return pending.code;
  }

  private get session(): OpenSession["session"] {
    return this.device.session;
  }

  /** `GET /api/me`. */
  me(): WebMe {
    if (!this.opened) return this.linking ? { registered: false, linking: this.linking.code } : { registered: false };
    const local = this.opened.session.client.local;
    return {
      registered: true,
      username: local.username,
      uuid: local.uuid,
      deviceId: local.deviceId,
      server: local.serverUrl,
      online: this.online,
    };
  }

  /** `POST /api/register`. */
  async register(request: WebRegisterRequest): Promise<WebMe> {
    if (this.linking)
      throw new WebApiError(409, "linking", "this profile is being linked to an account: wait, or restart the daemon");
    if (this.opened || this.profile.hasStore())
      throw new WebApiError(409, "already_registered", `${this.profile.dir} already holds a device`);
    try {
      await registerDevice(
        this.profile,
        { ...request, allowInsecureHttp: this.options.allowInsecureHttp ?? false },
        (message) => this.warn(message),
      );
    } catch (error) {
      throw toWebApiError(error, { server: request.server });
    }
    this.open();
    return this.me();
  }

  /**
   * How a conversation or author is named: a verified (or looked-up)
   * username, a group's title, else the first 8 characters of the account id.
   */
  private title(conversation: string): string {
    const { session } = this;
    if (conversation.startsWith("group:"))
      return session.client.group(conversation.slice("group:".length))?.title ?? conversation.slice(6, 14);
    const name = session.nameOf(conversation);
    const id = uuidPrefix.exec(name)?.[0];
    return id ? id.slice(0, 8) + name.slice(id.length) : name;
  }

  /** `GET /api/conversations`, most recent first. */
  conversations(): WebConversation[] {
    const { session } = this;
    const { store } = this.device;
    const ids = new Set(store.conversationPeers());
    for (const group of session.client.listGroups()) ids.add(`group:${group.id}`);
    for (const id of this.outboxes.keys()) ids.add(id);
    const list = [...ids].map((id): WebConversation => {
      const stored = this.visible(id, webUnreadWindow);
      const readUpTo = this.state.readUpTo[id] ?? 0;
      const unread = stored.filter((m) => m.direction === "in" && m.storedAt > readUpTo).length;
      const queued = this.outboxes.get(id)?.entries.at(-1);
      const lastStored = stored.at(-1);
      const last = queued
        ? { text: queued.text, at: queued.at, outgoing: true }
        : lastStored && {
            text:
              lastStored.text || (lastStored.attachment ? `[file ${webAttachment(lastStored.attachment).name}]` : ""),
            at: lastStored.timestamp,
            outgoing: lastStored.direction === "out",
          };
      const group = id.startsWith("group:");
      const bridges = group ? session.client.groupBridges(id.slice("group:".length)).map((b) => bridgeBanner(b)) : [];
      return {
        id,
        kind: group ? "group" : "direct",
        title: this.title(id),
        unread,
        ...(last ? { last } : {}),
        ...(!group && this.keyChanged(id) ? { keyChanged: true as const } : {}),
        ...(bridges.length ? { bridges } : {}),
      };
    });
    return list.sort((a, b) => (b.last?.at ?? 0) - (a.last?.at ?? 0));
  }

  /** A message this account sent (or queued), as the page shows it. */
  private ownMessage(id: string, text: string, at: number, status: WebMessageStatus): WebMessage {
    const self = this.session.client.local.uuid;
    return { id, author: self, authorName: this.title(self), outgoing: true, text, at, status };
  }

  /** `GET /api/conversations/:id/messages`, oldest first (queued messages last). */
  messages(conversation: string, limit: number): WebMessage[] {
    const { session } = this;
    const self = session.client.local.uuid;
    const delivered = new Set(this.state.delivered[conversation] ?? []);
    const stored = this.visible(conversation, limit).map((m) => this.toWebMessage(m, self, delivered));
    const queued = (this.outboxes.get(conversation)?.entries ?? []).map((e) =>
      this.ownMessage(e.id, e.text, e.at, "queued"),
    );
    return [...stored, ...queued].slice(-limit);
  }

  /** The latest `limit` stored messages of a conversation, without failed attempts' records. */
  private visible(conversation: string, limit: number): StoredMessage[] {
    const hidden = new Set(this.state.hidden);
    const { store } = this.device;
    const list = store.messages(conversation, limit + hidden.size).filter((m) => !hidden.has(m.id));
    return list.slice(-limit);
  }

  private toWebMessage(m: StoredMessage, self: string, delivered: Set<number>): WebMessage {
    const outgoing = m.direction === "out";
    const author = m.author ?? (outgoing ? self : m.peer);
    const status: WebMessageStatus = outgoing ? (delivered.has(m.timestamp) ? "delivered" : "sent") : "received";
    return {
      id: m.id,
      author,
      authorName: this.title(author),
      outgoing,
      text: m.text,
      at: m.timestamp,
      status,
      ...(m.attachment ? { attachment: webAttachment(m.attachment) } : {}),
    };
  }

  /** Whether sending to `uuid` is blocked: their key changed after they were verified. */
  private keyChanged(uuid: string): boolean {
    return this.device.store.getIdentity(uuid)?.blocked ?? false;
  }

  /** `POST /api/conversations/:id/read`. */
  markRead(conversation: string): void {
    const last = this.device.store.messages(conversation, 1).at(-1);
    this.state.readUpTo[conversation] = Math.max(last?.storedAt ?? 0, this.state.readUpTo[conversation] ?? 0);
    this.saveState();
    this.emit("event", { type: "conversations" });
  }

  private saveState(): void {
    const temporary = `${this.statePath}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(this.state)}\n`, { mode: 0o600 });
    renameSync(temporary, this.statePath);
  }

  /** A delivery receipt: marks the sent messages with those timestamps delivered, in their conversation. */
  private delivered(from: string, timestamps: number[]): void {
    const { client } = this.session;
    const candidates = [
      from,
      ...client
        .listGroups()
        .filter((g) => g.members.includes(from))
        .map((g) => `group:${g.id}`),
    ];
    for (const conversation of candidates) {
      const sent = this.device.store
        .messages(conversation, webUnreadWindow)
        .filter((m) => m.direction === "out" && timestamps.includes(m.timestamp));
      if (!sent.length) continue;
      const list = (this.state.delivered[conversation] ??= []);
      for (const m of sent) {
        if (list.includes(m.timestamp)) continue;
        list.push(m.timestamp);
        this.emit("event", { type: "status", conversation, id: m.id, status: "delivered" });
      }
      if (list.length > maxDeliveredKept) list.splice(0, list.length - maxDeliveredKept);
      this.saveState();
    }
  }

  /** `POST /api/send`: sends now, or queues when the homeserver is unreachable (then sends on reconnect). */
  async send(to: string, text: string): Promise<WebSendResponse> {
    const { session } = this;
    if (!text.trim()) throw new WebApiError(400, "invalid_argument", "the message is empty");
    let target: Target;
    try {
      target = await session.resolveTarget(to);
    } catch (error) {
      throw toWebApiError(error, this.device.context);
    }
    const conversation = this.sendable(target);
    const { outbox, entries } = this.outboxFor(conversation);
    const result = await new Promise<{ status: "sent" | "queued"; id: string } | { error: unknown }>((resolve) => {
      entries.push({ id: `queued-${randomUUID()}`, text, at: Date.now(), settle: resolve, answered: false });
      void outbox.submit(text);
    });
    if ("error" in result) throw toWebApiError(result.error, this.device.context);
    return { conversation, ...result };
  }

  /**
   * The conversation of a target this account may send to now.
   * @throws WebApiError `group_refused` (409) for a group it left, `identity_changed` (409) for a verified contact
   * whose key changed (nothing is encrypted or sent)
   */
  private sendable(target: Target): string {
    if (target.kind === "group") {
      if (!target.group.members.includes(this.session.client.local.uuid))
        throw new WebApiError(409, "group_refused", `you are no longer a member of ${target.group.title}`);
      return `group:${target.group.id}`;
    }
    if (this.keyChanged(target.uuid))
      throw new WebApiError(
        409,
        "identity_changed",
        `${target.name}'s safety number has changed since you verified it, so sending is blocked. ` +
          "Compare safety numbers again and verify, or accept the new safety number.",
      );
    return target.uuid;
  }

  /** The outbox of a conversation (its queued lines from the profile, given ids). */
  private outboxFor(conversation: string): { outbox: LineOutbox; entries: QueuedEntry[] } {
    const existing = this.outboxes.get(conversation);
    if (existing) return existing;
    const pending = this.profile.outbox.pending(conversation);
    const entries: QueuedEntry[] = pending.map((text) => ({
      id: `queued-${randomUUID()}`,
      text,
      at: Date.now(),
      answered: true,
    }));
    const outbox = new LineOutbox({
      pending,
      persist: (lines) => this.profile.outbox.set(conversation, lines),
      send: async (text) => {
        const entry = entries[0]!;
        const { timestamp } = await this.sendNow(conversation, text);
        entries.shift();
        // Sent: nothing below may throw back into the outbox (it would count the line as failed).
        try {
          this.reportSent(conversation, entry, text, timestamp);
        } catch (error) {
          this.warn(`reporting a sent message failed: ${toCliError(error).message}`);
        }
      },
      queued: () => {
        // Called for each line newly queued, oldest first: the unanswered entries.
        const entry = entries.find((e) => !e.answered);
        if (!entry) return;
        entry.answered = true;
        entry.settle?.({ status: "queued", id: entry.id });
        this.emit("event", { type: "conversations" });
      },
      failed: (_text, error) => {
        const entry = entries.shift();
        if (!entry) return;
        if (!entry.answered) return entry.settle?.({ error });
        this.warn(`a queued message was refused: ${toCliError(error, this.opened?.context).message}`);
        this.emit("event", { type: "status", conversation, id: entry.id, status: "failed" });
        this.emit("event", { type: "conversations" });
      },
      retryMs: this.retry,
    });
    const held = { outbox, entries };
    this.outboxes.set(conversation, held);
    return held;
  }

  /** A line went out: answers its `POST /api/send` (or, queued earlier, sends a `status` event), and shows it. */
  private reportSent(conversation: string, entry: QueuedEntry, text: string, timestamp: number): void {
    const stored = this.device.store
      .messages(conversation, 50)
      .reverse()
      .find((m) => m.direction === "out" && m.timestamp === timestamp && m.text === text);
    const id = stored?.id ?? entry.id;
    if (entry.answered) {
      // Its page knows it by the queued id: that id turns `sent` (a refetch shows it with the stored id).
      this.emit("event", { type: "status", conversation, id: entry.id, status: "sent" });
    } else {
      entry.answered = true;
      entry.settle?.({ status: "sent", id });
      // Other pages (tabs) learn of it too; the sending page sees the id its POST got.
      this.emit("event", { type: "message", conversation, message: this.ownMessage(id, text, timestamp, "sent") });
    }
    this.emit("event", { type: "conversations" });
  }

  /** Sends one line; a failed attempt's history record is hidden (the line is still queued, or it failed). */
  private async sendNow(conversation: string, text: string): Promise<{ timestamp: number }> {
    const { store } = this.device;
    const before = new Set(store.messages(conversation, 20).map((m) => m.id));
    try {
      return await this.sendOnce(conversation, text);
    } catch (error) {
      const stale = store
        .messages(conversation, 20)
        .filter((m) => m.direction === "out" && m.text === text && !before.has(m.id));
      if (stale.length) {
        this.state.hidden.push(...stale.map((m) => m.id));
        if (this.state.hidden.length > maxHiddenKept)
          this.state.hidden.splice(0, this.state.hidden.length - maxHiddenKept);
        this.saveState();
      }
      throw error;
    }
  }

  private async sendOnce(conversation: string, text: string): Promise<{ timestamp: number }> {
    const { client } = this.session;
    if (conversation.startsWith("group:")) return client.sendGroupText(conversation.slice("group:".length), text);
    return client.sendText(conversation, text);
  }

  /** `POST /api/groups` (an addition). */
  async createGroup(title: string, members: string[]): Promise<WebCreateGroupResponse> {
    const { session } = this;
    try {
      const uuids = [];
      for (const member of members) uuids.push((await session.resolveUser(member)).uuid);
      const group = await session.client.createGroup(title, uuids);
      this.emit("event", { type: "conversations" });
      return { conversation: `group:${group.id}`, title: group.title, members: session.names(group.members) };
    } catch (error) {
      throw toWebApiError(error, this.device.context);
    }
  }

  /** `GET /api/safety/:user` (an addition). */
  async safetyNumber(user: string): Promise<WebSafetyNumber> {
    const { session } = this;
    try {
      const peer = await session.resolveUser(user);
      const number = await session.client.safetyNumber(peer.uuid);
      const trust = await session.client.trustState(peer.uuid);
      const qrSvg = await QRCode.toString(number.scannable, { type: "svg", margin: 2 });
      const digits = number.digits.match(/\d{5}/g)?.join(" ") ?? number.digits;
      return { digits, qrSvg, verified: trust?.verified ?? false, keyChanged: trust?.blocked ?? false };
    } catch (error) {
      throw toWebApiError(error, this.device.context);
    }
  }

  /**
   * `POST /api/safety/:user/verify` (an addition): marks the user verified when
   * `number` (their screen's digits or scanned payload) matches; without
   * `number`, the user has compared this device's number in person.
   */
  async verify(user: string, number: string | undefined): Promise<WebSafetyNumber> {
    const { session } = this;
    try {
      const peer = await session.resolveUser(user);
      const entered = number ?? (await session.client.safetyNumber(peer.uuid)).digits;
      if (!(await session.client.verify(peer.uuid, entered)))
        throw new CliError("safety_number_mismatch", `that is not your safety number with ${peer.name}`);
    } catch (error) {
      throw toWebApiError(error, this.device.context);
    }
    // Verifying lifts a block after a key change: the list's `keyChanged` changes.
    this.emit("event", { type: "conversations" });
    return this.safetyNumber(user);
  }

  /**
   * `POST /api/identity/:user/accept`: accepts a contact's changed key without
   * verifying it (as `zimchat-chat accept`): sending works again, and the
   * contact is unverified until their new number is verified.
   * @throws WebApiError `unknown_contact` (404) when no key was ever exchanged with them
   */
  async acceptIdentity(user: string): Promise<WebSafetyNumber> {
    const { session } = this;
    try {
      const peer = await session.resolveUser(user);
      if (!(await session.client.trustState(peer.uuid)))
        throw new CliError(
          "unknown_contact",
          `you have never exchanged keys with ${peer.name}: there is nothing to accept`,
        );
      await session.client.acceptIdentityChange(peer.uuid);
      this.emit("event", { type: "conversations" });
    } catch (error) {
      throw toWebApiError(error, this.device.context);
    }
    return this.safetyNumber(user);
  }

  /** A directory in the profile for files on their way through the daemon (owner-only, like the profile). */
  transferPath(): string {
    const dir = join(this.profile.dir, "web-transfers");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return join(dir, randomUUID());
  }

  /** The conversation a file goes to (`POST /api/files`), checked before its bytes are read. */
  async fileTarget(to: string): Promise<Target> {
    try {
      const target = await this.session.resolveTarget(to);
      this.sendable(target);
      return target;
    } catch (error) {
      throw toWebApiError(error, this.device.context);
    }
  }

  /** `POST /api/files`: encrypts, uploads and sends the file at `path` (not queued when the homeserver is down). */
  async sendFile(target: Target, path: string, name: string): Promise<WebFileResponse> {
    const { client } = this.session;
    const conversation = this.sendable(target);
    let sent: { timestamp: number; attachment: AttachmentPointer };
    try {
      sent =
        target.kind === "group"
          ? await client.sendGroupAttachment(target.group.id, path, { fileName: name })
          : await client.sendAttachment(target.uuid, path, { fileName: name });
    } catch (error) {
      throw toWebApiError(error, this.device.context);
    }
    const stored = this.device.store
      .messages(conversation, 50)
      .reverse()
      .find((m) => m.direction === "out" && m.timestamp === sent.timestamp && m.attachment?.id === sent.attachment.id);
    const id = stored?.id ?? `file-${randomUUID()}`;
    const attachment = webAttachment(sent.attachment);
    this.emit("event", {
      type: "message",
      conversation,
      message: { ...this.ownMessage(id, "", sent.timestamp, "sent"), attachment },
    });
    this.emit("event", { type: "conversations" });
    return { conversation, id, status: "sent", attachment };
  }

  /**
   * `GET /api/files/:conversation/:id`: downloads, checks and decrypts a
   * message's file to `destination` (written only once it checked out).
   * @throws WebApiError `unknown_message` (404) when the conversation has no such message with a file
   */
  async downloadFile(conversation: string, id: string, destination: string): Promise<WebAttachment> {
    const { client } = this.session;
    const message = this.device.store
      .messages(conversation, 1_000_000)
      .find((m) => m.id === id && m.attachment !== undefined);
    const pointer = message?.attachment;
    if (!message || !pointer) throw new WebApiError(404, "unknown_message", "this conversation has no such file");
    // A file from another server's user kept before the pointer recorded its server: the author's server stores it.
    const author = message.direction === "in" ? (message.author ?? message.peer) : undefined;
    const server = pointer.server ?? (author ? client.serverOf(author) : null);
    try {
      await client.downloadAttachment({ ...pointer, ...(server ? { server } : {}) }, destination);
    } catch (error) {
      await rm(destination, { force: true });
      throw toWebApiError(error, this.device.context);
    }
    return webAttachment(pointer);
  }

  /** Stops connecting and retrying (queued messages stay in the profile), and closes the device. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.linking) {
      this.linking.cancel();
      await this.linking.done;
    }
    for (const { outbox } of this.outboxes.values()) await outbox.close();
    await this.opened?.close();
  }
}

/** What the page may know of a file: its name (control characters and path separators replaced) and size. */
export function webAttachment(pointer: StoredAttachmentPointer): WebAttachment {
  const name = (pointer.fileName ?? "").replace(/[\u0000-\u001f\u007f/\\]/g, "_").trim();
  return { name: name || "file", size: pointer.size };
}

/** How many of a conversation's latest messages count towards unread and delivery receipts. */
const webUnreadWindow = 500;
