/**
 * The XMPP adapter: an XEP-0114 component that puppets each ZimChat author as
 * its own MUC occupant and listens to rooms through one relay occupant.
 */
import { component, xml, type Component, type Element } from "@xmpp/component";
import type { BotLogger } from "@zimchat/plugin-sdk/bot";
import type { AdapterEvents, AdapterStatus, NetworkAdapter, OutgoingMessage, Prepared } from "../network.js";
import type { XmppConfig } from "./config.js";
import {
  XmppDeliveryError,
  XmppDisconnectedError,
  XmppJoinError,
  XmppTargetError,
  XmppTimeoutError,
} from "./errors.js";
import { nickAfterConflict, nickOf, parseRoomJid, PuppetNames, xmlSafe } from "./names.js";
import {
  backoff,
  bareOf,
  describe,
  errorCondition,
  NS_DATA,
  NS_DELAY,
  NS_DISCO_INFO,
  NS_MUC,
  NS_MUC_OWNER,
  resourceOf,
  statusCodes,
} from "./stanzas.js";

/** How long a connection attempt (TCP, stream, handshake) may take. */
const CONNECT_TIMEOUT_MS = 15_000;
/** How long the server may take to answer a join or an iq. */
const ANSWER_TIMEOUT_MS = 15_000;
/** How often an idle connection is checked with an iq; no answer closes it (and a reconnect follows). */
const KEEPALIVE_MS = 60_000;
/** Nick conflicts tried before a join gives up. */
const MAX_NICK_ATTEMPTS = 6;

/** One of our occupants in a room: the relay or a puppet. */
interface Occupant {
  /** Our real full JID (`alice@bridge.example/bridge`, or `bridge.example/relay`). */
  readonly jid: string;
  /** The nick wanted; after a conflict, the one the room gave. */
  nick: string;
  readonly baseNick: string;
  joined: boolean;
  joining: Promise<void> | null;
}

interface Room {
  readonly jid: string;
  readonly relay: Occupant;
  /** By ZimChat account id. */
  readonly puppets: Map<string, Occupant>;
  capWarned: boolean;
}

/** The answer to a join: the self-presence (status 110) or a presence error. */
interface PresenceWaiter {
  resolve(presence: Element): void;
  reject(error: Error): void;
}

interface IqWaiter {
  resolve(iq: Element): void;
  reject(error: Error): void;
}

/** One open connection. */
interface Session {
  readonly entity: Component;
  /** Resolves with a reason when the socket closes. */
  readonly closed: Promise<string>;
}

/**
 * Creates the XMPP side of a bridge. It connects as a component (XEP-0114),
 * joins each target room with a relay occupant (`config.relayNick`) and has
 * each ZimChat author speak as a puppet occupant `<name>@<domain>/bridge`.
 * Log lines name rooms, counts and reasons, never message text.
 * @example
 * const adapter = createXmppAdapter(xmppConfigSchema.parse(settings), logger);
 * await adapter.start({ message, connected, disconnected });
 * await adapter.join("club@conference.example.test");
 */
export function createXmppAdapter(config: XmppConfig, logger: BotLogger): NetworkAdapter {
  return new XmppAdapter(config, logger);
}

class XmppAdapter implements NetworkAdapter {
  readonly network = "xmpp" as const;
  private events: AdapterEvents | null = null;
  private session: Session | null = null;
  /** The entity of an attempt in progress (so stop() can close it). */
  private connecting: Component | null = null;
  private online = false;
  private stopped = false;
  private everOnline = false;
  private reconnects = 0;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private keepalive: NodeJS.Timeout | null = null;
  private readonly rooms = new Map<string, Room>();
  private readonly names = new PuppetNames();
  private readonly presenceWaiters = new Map<string, PresenceWaiter>();
  private readonly iqWaiters = new Map<string, IqWaiter>();
  /** Ids of messages sent in the batch being confirmed → their room; a bounce is recorded in `bounces`. */
  private readonly inFlight = new Map<string, string>();
  private readonly bounces = new Map<string, string>();
  private nextId = 0;

  constructor(
    private readonly config: XmppConfig,
    private readonly logger: BotLogger,
  ) {}

  normalizeTarget(target: string): string | null {
    const room = parseRoomJid(target, this.config.mucDomain);
    if (room === null) return null;
    if (this.config.allowedRooms !== undefined) return this.config.allowedRooms.includes(room) ? room : null;
    return room.endsWith(`@${this.config.mucDomain}`) ? room : null;
  }

  prepare(text: string): Prepared {
    const chars = [...text];
    const max = this.config.maxMessageChars;
    if (chars.length <= max) return { ok: true, text, cut: false };
    if (this.config.longMessages === "refuse") {
      const n = (x: number): string => x.toLocaleString("en-US");
      return { ok: false, reason: `too long for XMPP: ${n(chars.length)} characters, the limit is ${n(max)}` };
    }
    // The notice's length depends on the count it states: shrink until it fits.
    const noticeFor = (keep: number): string =>
      ` … [cut: ${(chars.length - keep).toLocaleString("en-US")} more characters]`;
    let keep = max;
    for (let i = 0; i < 3; i++) keep = max - noticeFor(keep).length;
    const notice = noticeFor(keep);
    return { ok: true, text: chars.slice(0, keep).join("").trimEnd() + notice, cut: true };
  }

  start(events: AdapterEvents): Promise<void> {
    if (this.loop !== null) throw new Error("the XMPP adapter was already started");
    this.events = events;
    this.loop = this.run().catch((error: unknown) => this.logger.error("xmpp: the connection loop failed", error));
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    if (this.stopped) return this.loop ?? undefined;
    this.stopped = true;
    this.wake?.();
    const connecting = this.connecting;
    if (connecting !== null) connecting.socket?.destroy();
    const session = this.session;
    if (session !== null) {
      for (const room of this.rooms.values()) await this.leaveRoom(session, room);
      await closeEntity(session.entity);
    }
    await this.loop;
  }

  async join(target: string): Promise<void> {
    const jid = this.normalizeTarget(target);
    if (jid === null) throw new XmppTargetError(target, "invalid");
    let room = this.rooms.get(jid);
    if (room === undefined) {
      room = {
        jid,
        relay: newOccupant(`${this.config.domain}/relay`, nickOf(this.config.relayNick, "zimchat")),
        puppets: new Map(),
        capWarned: false,
      };
      this.rooms.set(jid, room);
    }
    if (this.online) await this.ensureJoined(room, room.relay);
  }

  async part(target: string): Promise<void> {
    const jid = this.normalizeTarget(target);
    const room = jid === null ? undefined : this.rooms.get(jid);
    if (room === undefined) return;
    this.rooms.delete(room.jid);
    if (this.session !== null && this.online) await this.leaveRoom(this.session, room);
    this.logger.info(`xmpp: left ${room.jid}`);
  }

  async deliver(messages: OutgoingMessage[]): Promise<void> {
    const session = this.session;
    if (session === null || !this.online) throw new XmppDisconnectedError("not connected");
    if (messages.length === 0) return;
    const ids: string[] = [];
    try {
      for (const message of messages) {
        const room = this.rooms.get(message.target);
        if (room === undefined) throw new XmppTargetError(message.target, "not-joined");
        await this.ensureJoined(room, room.relay);
        const puppet = this.puppetFor(room, message);
        const speaker = puppet ?? room.relay;
        await this.ensureJoined(room, speaker);
        const text = xmlSafe(puppet === null ? `<${message.senderName}> ${message.text}` : message.text);
        const id = `zim-${message.id}-${++this.nextId}`;
        ids.push(id);
        this.inFlight.set(id, room.jid);
        await this.send(
          session,
          xml("message", { type: "groupchat", from: speaker.jid, to: room.jid, id }, xml("body", {}, text)),
        );
      }
      // Stanzas on one stream are processed in order: the answer to an iq
      // sent after the messages means the server has handled them.
      await this.request(
        session,
        xml("iq", { type: "get", to: this.config.mucDomain }, xml("query", { xmlns: NS_DISCO_INFO })),
      );
      const bounced = ids.filter((id) => this.bounces.has(id));
      if (bounced.length > 0) {
        const first = bounced[0] as string;
        throw new XmppDeliveryError(this.inFlight.get(first) ?? "?", bounced.length, this.bounces.get(first) ?? "?");
      }
    } finally {
      for (const id of ids) {
        this.inFlight.delete(id);
        this.bounces.delete(id);
      }
    }
    this.logger.info(`xmpp: delivered ${messages.length} message(s)`);
  }

  status(): AdapterStatus {
    let puppets = 0;
    for (const room of this.rooms.values()) for (const p of room.puppets.values()) if (p.joined) puppets++;
    return { connected: this.online, reconnects: this.reconnects, targets: [...this.rooms.keys()], puppets };
  }

  // --- connection ---------------------------------------------------------

  /** Connects, waits for the drop, backs off, again, until stop(). */
  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let session: Session | null = null;
      try {
        session = await this.connect();
      } catch (error) {
        if (!this.stopped) this.logConnectFailure(error);
      }
      if (session !== null) {
        failures = 0;
        const reason = await this.serve(session);
        try {
          if (!this.stopped) this.events?.disconnected(reason);
        } catch (error) {
          this.logger.error("xmpp: the disconnected handler failed", error); // and keep reconnecting
        }
      }
      if (this.stopped) break;
      const delay = backoff(failures++, this.config.reconnect.minMs, this.config.reconnect.maxMs);
      this.logger.info(`xmpp: reconnecting in ${delay} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  private async connect(): Promise<Session> {
    const entity = component({
      service: this.config.service,
      domain: this.config.domain,
      password: this.config.secret,
    });
    entity.reconnect.stop(); // ours backs off; the built-in one retries every second
    this.connecting = entity;
    let lastError = "";
    entity.on("error", (error: unknown) => {
      lastError = describe(error);
    });
    const closed = new Promise<string>((resolve) => {
      entity.once("disconnect", () => resolve(lastError === "" ? "connection closed" : lastError));
    });
    entity.on("stanza", (stanza: Element) => this.onStanza(stanza));
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        entity.start(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new XmppTimeoutError("the component handshake", CONNECT_TIMEOUT_MS)),
            CONNECT_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (error) {
      entity.socket?.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
      this.connecting = null;
    }
    if (this.stopped) {
      await closeEntity(entity);
      throw new XmppDisconnectedError("stopped");
    }
    return { entity, closed };
  }

  private logConnectFailure(error: unknown): void {
    const condition = (error as { condition?: unknown } | null)?.condition;
    const where = `${this.config.service} as ${this.config.domain}`;
    if (condition === "not-authorized") {
      this.logger.error(
        `xmpp: ${where}: the server refused the component secret (check the bridge's secret and the server's component_secret)`,
      );
    } else if (condition === "host-unknown") {
      this.logger.error(
        `xmpp: ${where}: the server has no component ${this.config.domain} (add a Component entry for it)`,
      );
    } else {
      this.logger.warn(`xmpp: connecting to ${where} failed: ${describe(error)}`);
    }
  }

  /** Runs one connection: rejoins, reports connected, keeps it alive; resolves with the reason it dropped. */
  private async serve(session: Session): Promise<string> {
    this.session = session;
    this.online = true;
    if (this.everOnline) this.reconnects++;
    this.everOnline = true;
    this.logger.info(`xmpp: connected to ${this.config.service} as ${this.config.domain}`);
    this.keepalive = setInterval(() => void this.checkAlive(session), KEEPALIVE_MS);
    void this.rejoinAll(session);
    const reason = await session.closed;
    clearInterval(this.keepalive);
    this.keepalive = null;
    this.online = false;
    this.session = null;
    const error = new XmppDisconnectedError(reason);
    for (const waiter of this.presenceWaiters.values()) waiter.reject(error);
    for (const waiter of this.iqWaiters.values()) waiter.reject(error);
    this.presenceWaiters.clear();
    this.iqWaiters.clear();
    for (const room of this.rooms.values()) {
      room.relay.joined = false;
      room.relay.joining = null;
      room.puppets.clear(); // they rejoin lazily, on their next message
    }
    if (!this.stopped) this.logger.warn(`xmpp: disconnected: ${reason}`);
    return reason;
  }

  private async rejoinAll(session: Session): Promise<void> {
    const rooms = [...this.rooms.values()];
    const results = await Promise.allSettled(rooms.map((room) => this.ensureJoined(room, room.relay)));
    results.forEach((result, i) => {
      if (result.status === "rejected") {
        this.logger.warn(`xmpp: rejoining ${rooms[i]?.jid ?? "?"} failed: ${describe(result.reason)}`);
      }
    });
    if (this.session !== session || !this.online || this.stopped) return;
    try {
      this.events?.connected();
    } catch (error) {
      this.logger.error("xmpp: the connected handler failed", error);
    }
  }

  private rejoinRelayLater(room: Room): void {
    const session = this.session;
    setTimeout(() => {
      if (this.session !== session || !this.online || this.rooms.get(room.jid) !== room) return;
      this.ensureJoined(room, room.relay).catch((error: unknown) => {
        this.logger.warn(`xmpp: rejoining ${room.jid} failed: ${describe(error)}`);
      });
    }, this.config.reconnect.minMs).unref();
  }

  private async checkAlive(session: Session): Promise<void> {
    try {
      await this.request(
        session,
        xml("iq", { type: "get", to: this.config.mucDomain }, xml("query", { xmlns: NS_DISCO_INFO })),
      );
    } catch (error) {
      if (this.session !== session) return;
      this.logger.warn(`xmpp: the server stopped answering (${describe(error)}); closing the connection`);
      session.entity.socket?.destroy();
    }
  }

  private async send(session: Session, stanza: Element): Promise<void> {
    if (this.session !== session || !this.online) throw new XmppDisconnectedError("the connection dropped");
    try {
      await session.entity.send(stanza);
    } catch (error) {
      throw new XmppDisconnectedError(describe(error), { cause: error });
    }
  }

  /** Sends an iq and resolves with its answer (a result or an error: either way the server processed it). */
  private request(session: Session, iq: Element): Promise<Element> {
    const id = `zim-iq-${++this.nextId}`;
    iq.attrs.id = id;
    iq.attrs.from ??= this.config.domain;
    return new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.iqWaiters.delete(id);
        reject(new XmppTimeoutError(`an iq to ${iq.attrs.to ?? "?"}`, ANSWER_TIMEOUT_MS));
      }, ANSWER_TIMEOUT_MS);
      const settle = { resolve, reject };
      this.iqWaiters.set(id, {
        resolve: (el) => (clearTimeout(timer), settle.resolve(el)),
        reject: (err) => (clearTimeout(timer), settle.reject(err)),
      });
      this.send(session, iq).catch((error: unknown) => {
        this.iqWaiters.delete(id);
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  // --- rooms and occupants ------------------------------------------------

  /** The puppet that says `message` (created on its first message), or null when the room's cap is reached. */
  private puppetFor(room: Room, message: OutgoingMessage): Occupant | null {
    const known = room.puppets.get(message.senderId);
    if (known !== undefined) return known;
    const cap = this.config.maxPuppetsPerRoom;
    if (room.puppets.size >= cap) {
      if (!room.capWarned)
        this.logger.warn(`xmpp: ${room.jid} has ${cap} puppets; more authors speak through the relay`);
      room.capWarned = true;
      return null;
    }
    // The local part is the puppet's identity on the server: kept across restarts by the core's store.
    const { localpart, changed } = this.names.localpart(
      message.senderId,
      message.senderName,
      this.events?.puppetName(message.senderId),
    );
    if (changed) this.events?.puppetNamed(message.senderId, localpart);
    const puppet = newOccupant(`${localpart}@${this.config.domain}/bridge`, nickOf(message.senderName, localpart));
    room.puppets.set(message.senderId, puppet);
    return puppet;
  }

  /** Joins `occupant` unless it is in the room (one join at a time per occupant). */
  private ensureJoined(room: Room, occupant: Occupant): Promise<void> {
    if (occupant.joined) return Promise.resolve();
    if (occupant.joining !== null) return occupant.joining;
    const joining: Promise<void> = this.joinOccupant(room, occupant).finally(() => {
      // A reconnect may have started a newer join meanwhile: leave that one be.
      if (occupant.joining === joining) occupant.joining = null;
    });
    occupant.joining = joining;
    return joining;
  }

  private async joinOccupant(room: Room, occupant: Occupant): Promise<void> {
    const session = this.session;
    if (session === null || !this.online) throw new XmppDisconnectedError("not connected");
    for (let attempt = 1; attempt <= MAX_NICK_ATTEMPTS; attempt++) {
      const answer = this.waitPresence(occupant.jid, room.jid);
      answer.catch(() => {}); // awaited below; this only keeps a failed send from leaving it unhandled
      await this.send(
        session,
        xml(
          "presence",
          { from: occupant.jid, to: `${room.jid}/${occupant.nick}` },
          xml("x", { xmlns: NS_MUC }, xml("history", { maxstanzas: "0" })),
        ),
      );
      const presence = await answer;
      if (presence.attrs.type === "error") {
        const condition = errorCondition(presence);
        if (condition === "conflict" && attempt < MAX_NICK_ATTEMPTS) {
          occupant.nick = nickAfterConflict(occupant.baseNick, attempt);
          continue;
        }
        throw new XmppJoinError(room.jid, condition);
      }
      occupant.nick = resourceOf(presence.attrs.from ?? "") || occupant.nick;
      if (statusCodes(presence).has("201")) {
        try {
          await this.unlock(session, room, occupant);
        } catch (error) {
          // Leave, so the locked room goes away instead of staying half-made with us in it.
          await this.send(session, unavailable(occupant, room)).catch(() => {});
          throw error;
        }
      }
      occupant.joined = true;
      this.logger.info(`xmpp: ${occupant === room.relay ? "the relay" : "a puppet"} joined ${room.jid}`);
      return;
    }
    throw new XmppJoinError(room.jid, "conflict");
  }

  /** A new room stays locked (others get item-not-found) until its creator accepts the default configuration. */
  private async unlock(session: Session, room: Room, owner: Occupant): Promise<void> {
    const answer = await this.request(
      session,
      xml(
        "iq",
        { type: "set", from: owner.jid, to: room.jid },
        xml("query", { xmlns: NS_MUC_OWNER }, xml("x", { xmlns: NS_DATA, type: "submit" })),
      ),
    );
    if (answer.attrs.type === "error") throw new XmppJoinError(room.jid, `unlocking: ${errorCondition(answer)}`);
    this.logger.info(`xmpp: created and unlocked ${room.jid}`);
  }

  private async leaveRoom(session: Session, room: Room): Promise<void> {
    const occupants = [room.relay, ...room.puppets.values()].filter((o) => o.joined);
    for (const occupant of occupants) {
      occupant.joined = false;
      try {
        await this.send(session, unavailable(occupant, room));
      } catch {
        return; // the connection is gone: the server drops our occupants itself
      }
    }
  }

  private waitPresence(occupantJid: string, roomJid: string): Promise<Element> {
    const key = `${occupantJid}|${roomJid}`;
    this.presenceWaiters.get(key)?.reject(new Error("superseded by a new join"));
    return new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.presenceWaiters.delete(key);
        reject(new XmppTimeoutError(`a join of ${roomJid}`, ANSWER_TIMEOUT_MS));
      }, ANSWER_TIMEOUT_MS);
      this.presenceWaiters.set(key, {
        resolve: (el) => (clearTimeout(timer), resolve(el)),
        reject: (err) => (clearTimeout(timer), reject(err)),
      });
    });
  }

  // --- incoming -----------------------------------------------------------

  private onStanza(stanza: Element): void {
    try {
      if (stanza.name === "iq") this.onIq(stanza);
      else if (stanza.name === "presence") this.onPresence(stanza);
      else if (stanza.name === "message") this.onMessage(stanza);
    } catch (error) {
      this.logger.error("xmpp: handling a stanza failed", error);
    }
  }

  private onIq(iq: Element): void {
    const { type, id } = iq.attrs;
    if ((type !== "result" && type !== "error") || id === undefined) return;
    const waiter = this.iqWaiters.get(id);
    if (waiter === undefined) return;
    this.iqWaiters.delete(id);
    waiter.resolve(iq);
  }

  private onPresence(presence: Element): void {
    const from = presence.attrs.from ?? "";
    const to = presence.attrs.to ?? "";
    const roomJid = bareOf(from).toLowerCase();
    const key = `${to}|${roomJid}`;
    const waiter = this.presenceWaiters.get(key);
    const self = statusCodes(presence).has("110");
    if (presence.attrs.type === "error") {
      if (waiter !== undefined) {
        this.presenceWaiters.delete(key);
        waiter.resolve(presence);
      } else {
        this.logger.warn(`xmpp: presence error from ${roomJid}: ${errorCondition(presence)}`);
      }
      return;
    }
    if (!self) return;
    if (presence.attrs.type === "unavailable") {
      // Kicked, banned, or the room was destroyed: join again on next use.
      const room = this.rooms.get(roomJid);
      const occupant = room === undefined ? undefined : findOccupant(room, to);
      // Not when we left on purpose (joined is already false) or changed nick (303).
      if (room !== undefined && occupant?.joined === true && !statusCodes(presence).has("303")) {
        occupant.joined = false;
        const who = occupant === room.relay ? "the relay" : "a puppet";
        this.logger.warn(`xmpp: ${who} left ${roomJid} (status ${[...statusCodes(presence)].join(",") || "none"})`);
        // Without the relay the room is not heard: join again soon (puppets rejoin on their next message).
        if (occupant === room.relay) this.rejoinRelayLater(room);
      }
      return;
    }
    if (waiter !== undefined) {
      this.presenceWaiters.delete(key);
      waiter.resolve(presence);
    }
  }

  private onMessage(message: Element): void {
    const from = message.attrs.from ?? "";
    const roomJid = bareOf(from).toLowerCase();
    const room = this.rooms.get(roomJid);
    if (message.attrs.type === "error") {
      const id = message.attrs.id;
      const condition = errorCondition(message);
      if (id !== undefined && this.inFlight.has(id)) {
        this.bounces.set(id, condition);
        const occupant = room === undefined ? undefined : findOccupant(room, message.attrs.to ?? "");
        if (occupant !== undefined) occupant.joined = false;
      }
      this.logger.warn(`xmpp: message error from ${roomJid}: ${condition}`);
      return;
    }
    if (room === undefined || message.attrs.type !== "groupchat") return;
    // Every occupant of ours receives the room's messages; take the relay's copy only.
    if (message.attrs.to !== room.relay.jid) return;
    const nick = resourceOf(from);
    const body = message.getChildText("body");
    if (nick === "" || body === null || body === "") return; // the room itself, subject changes, chat states
    if (message.getChild("delay", NS_DELAY) !== undefined) return; // history
    if (this.isOurs(room, nick)) return;
    this.events?.message({ target: room.jid, sender: nick, text: body });
  }

  private isOurs(room: Room, nick: string): boolean {
    if (room.relay.nick === nick) return true;
    for (const puppet of room.puppets.values()) if (puppet.nick === nick) return true;
    return false;
  }
}

function newOccupant(jid: string, nick: string): Occupant {
  return { jid, nick, baseNick: nick, joined: false, joining: null };
}

function unavailable(occupant: Occupant, room: Room): Element {
  return xml("presence", { type: "unavailable", from: occupant.jid, to: `${room.jid}/${occupant.nick}` });
}

function findOccupant(room: Room, jid: string): Occupant | undefined {
  if (room.relay.jid === jid) return room.relay;
  for (const puppet of room.puppets.values()) if (puppet.jid === jid) return puppet;
  return undefined;
}

/** Closes the stream and the socket, whatever state they are in. */
async function closeEntity(entity: Component): Promise<void> {
  const socket = entity.socket;
  try {
    await Promise.race([entity.stop(), new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
  } catch {
    // the socket may already be gone
  }
  socket?.destroy();
}
