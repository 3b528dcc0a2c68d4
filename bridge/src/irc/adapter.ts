/**
 * The IRC side of a bridge: one relay connection that joins the approved
 * channels, hears them and speaks for ZimChat members as `<name> text`, and
 * optionally one puppet connection per member (`name[zim]`) opened on their
 * first message and closed when idle. Lines are cut to IRC's limits before
 * they are queued (see `prepare`), paced per connection, and confirmed by a
 * PING/PONG round before the core deletes them from its outbox.
 */
import type { BotLogger } from "@zimchat/plugin-sdk/bot";
import linebreak from "irc-framework/src/linebreak.js";
import type { MessageEvent } from "irc-framework";
import type { AdapterEvents, AdapterStatus, NetworkAdapter, OutgoingMessage, Prepared } from "../network.js";
import type { IrcConfig } from "./config.js";
import { IrcConnection } from "./connection.js";

/** Bytes kept free in each line for the relay's `<name> ` prefix (a username is at most 64 bytes here). */
const prefixReserve = 67;
/** How often idle puppets are looked for. */
const reapEveryMs = 60_000;
/** How long a new puppet may take to register and join before its author falls back to the relay nick. */
const puppetJoinTimeoutMs = 15_000;

const channelPattern = /^[#&][^\s,\x07]{1,49}$/;

/** Splits a text into IRC lines of at most `bytes` bytes (newlines first, then words, then characters). */
export function ircLines(text: string, bytes: number): string[] {
  return text
    .split(/\r\n|\n|\r/)
    .map((line) => line.trimEnd())
    .filter((line) => line.length > 0)
    .flatMap((line) => [
      ...linebreak.lineBreak(line, { bytes, allowBreakingWords: true, allowBreakingGraphemes: true }),
    ]);
}

/** A nick for a ZimChat name: IRC's characters only, a letter or special first, the suffix kept within 30. */
export function puppetNick(name: string, suffix: string): string {
  let nick = name.replace(/[^A-Za-z0-9[\]\\`_^{|}-]/g, "_");
  if (!/^[A-Za-z[\]\\`_^{|}]/.test(nick)) nick = `_${nick}`;
  return nick.slice(0, 30 - suffix.length) + suffix;
}

interface Puppet {
  connection: IrcConnection;
  /** Resolves once it registered (and joined its channels), or rejects. */
  ready: Promise<void>;
  /** Channels it could not join (its author falls back to the relay there). */
  refused: Set<string>;
}

class IrcAdapter implements NetworkAdapter {
  readonly network = "irc" as const;
  private readonly relay: IrcConnection;
  private readonly puppets = new Map<string, Puppet>();
  private readonly targets = new Set<string>();
  private events: AdapterEvents | null = null;
  private reaper: NodeJS.Timeout | null = null;

  constructor(
    private readonly config: IrcConfig,
    private readonly logger: BotLogger,
  ) {
    this.relay = new IrcConnection({
      config,
      nick: config.nick,
      label: "relay",
      logger,
      reconnect: true,
      ...(config.sasl ? { sasl: config.sasl } : {}),
    });
  }

  normalizeTarget(target: string): string | null {
    const channel = target.trim().toLowerCase();
    if (!channelPattern.test(channel)) return null;
    if (this.config.channels && !this.config.channels.some((c) => c.toLowerCase() === channel)) return null;
    return channel;
  }

  prepare(text: string): Prepared {
    const { maxLines, maxLineBytes, longMessages } = this.config;
    const lines = ircLines(text, maxLineBytes - prefixReserve);
    if (!lines.length) return { ok: false, reason: "nothing to send (an empty message)" };
    if (lines.length <= maxLines) return { ok: true, text: lines.join("\n"), cut: false };
    if (longMessages === "refuse")
      return {
        ok: false,
        reason: `it would take ${lines.length} IRC lines, and this bridge sends at most ${maxLines} per message`,
      };
    const kept = lines.slice(0, maxLines - 1);
    kept.push(`[${lines.length - kept.length} more lines not sent: messages are cut to ${maxLines} IRC lines]`);
    return { ok: true, text: kept.join("\n"), cut: true };
  }

  async start(events: AdapterEvents): Promise<void> {
    this.events = events;
    this.relay.on("ready", () => events.connected());
    this.relay.on("closed", (reason: string, wasReady: boolean) => {
      if (wasReady) events.disconnected(reason);
    });
    this.relay.on("message", (event: MessageEvent) => this.onMessage(event));
    this.relay.on("kicked", (channel: string) => {
      // Rejoin after a pause: a kick is a moderator's word, not a flood ban; the pause keeps it from looping fast.
      setTimeout(() => {
        if (this.targets.has(channel)) this.relay.join(channel);
      }, 5_000).unref();
    });
    this.relay.start();
    this.reaper = setInterval(() => this.reapIdlePuppets(), reapEveryMs);
    this.reaper.unref();
  }

  async stop(): Promise<void> {
    if (this.reaper) clearInterval(this.reaper);
    this.reaper = null;
    await Promise.all([...this.puppets.values()].map((p) => p.connection.stop()));
    this.puppets.clear();
    await this.relay.stop();
  }

  async join(target: string): Promise<void> {
    this.targets.add(target);
    this.relay.join(target);
  }

  async part(target: string): Promise<void> {
    this.targets.delete(target);
    this.relay.part(target);
    for (const p of this.puppets.values()) if (p.connection.channels.has(target)) p.connection.part(target);
  }

  private onMessage(event: MessageEvent): void {
    const target = event.target.toLowerCase();
    if (!this.targets.has(target)) return;
    const nick = event.nick.toLowerCase();
    if (nick === this.relay.nick.toLowerCase()) return;
    for (const p of this.puppets.values()) if (p.connection.nick.toLowerCase() === nick) return;
    const text = event.type === "action" ? `* ${event.message}` : event.message;
    this.events?.message({ target, sender: event.nick, text });
  }

  async deliver(messages: OutgoingMessage[]): Promise<void> {
    let previous: IrcConnection | null = null;
    for (const message of messages) {
      const puppet = await this.puppetFor(message);
      const connection = puppet ?? this.relay;
      // Lines of two connections reach the server on two sockets: the earlier one is confirmed first, to keep order.
      if (previous && previous !== connection) await previous.confirm();
      previous = connection;
      for (const line of message.text.split("\n")) {
        await connection.say(message.target, puppet ? line : `<${message.senderName}> ${line}`);
      }
    }
    if (previous) await previous.confirm();
  }

  /** The author's puppet, joined to the message's channel, or null when the relay speaks for them. */
  private async puppetFor(message: OutgoingMessage): Promise<IrcConnection | null> {
    if (!this.config.puppets.enabled || !this.relay.ready) return null;
    let puppet = this.puppets.get(message.senderId);
    if (!puppet) {
      if (this.puppets.size >= this.config.puppets.max) return null;
      puppet = this.openPuppet(message);
    }
    if (puppet.refused.has(message.target)) return null;
    if (!puppet.connection.channels.has(message.target)) {
      puppet.connection.join(message.target);
      if (puppet.connection.ready) await puppet.connection.confirm().catch(() => {});
    }
    try {
      await puppet.ready;
    } catch {
      return null;
    }
    return puppet.connection.ready && !puppet.refused.has(message.target) ? puppet.connection : null;
  }

  private openPuppet(message: OutgoingMessage): Puppet {
    const nick =
      this.events?.puppetName(message.senderId) ?? puppetNick(message.senderName, this.config.puppets.suffix);
    const connection = new IrcConnection({
      config: this.config,
      nick,
      label: `puppet ${this.puppets.size + 1}`,
      logger: this.logger,
      reconnect: false,
    });
    const refused = new Set<string>();
    connection.join(message.target);
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("puppet did not join in time")), puppetJoinTimeoutMs);
      connection.once("ready", () => {
        clearTimeout(timer);
        if (connection.nick !== nick) this.events?.puppetNamed(message.senderId, connection.nick);
        else this.events?.puppetNamed(message.senderId, nick);
        resolve();
      });
      connection.once("closed", () => {
        clearTimeout(timer);
        reject(new Error("puppet connection closed"));
      });
    });
    ready.catch(() => {});
    connection.on("joinFailed", (channel: string) => refused.add(channel));
    connection.on("kicked", (channel: string) => refused.add(channel));
    connection.on("closed", () => {
      if (this.puppets.get(message.senderId)?.connection === connection) this.puppets.delete(message.senderId);
    });
    const puppet = { connection, ready, refused };
    this.puppets.set(message.senderId, puppet);
    connection.start();
    return puppet;
  }

  private reapIdlePuppets(): void {
    const idleMs = this.config.puppets.idleMinutes * 60_000;
    for (const [senderId, p] of this.puppets) {
      if (Date.now() - p.connection.lastUsed < idleMs) continue;
      this.puppets.delete(senderId);
      void p.connection.stop("idle");
    }
  }

  status(): AdapterStatus {
    return {
      connected: this.relay.ready,
      reconnects: this.relay.reconnects,
      targets: [...this.targets].sort(),
      puppets: this.puppets.size,
    };
  }
}

/** The IRC adapter for a bridge. */
export function createIrcAdapter(config: IrcConfig, logger: BotLogger): NetworkAdapter {
  return new IrcAdapter(config, logger);
}
