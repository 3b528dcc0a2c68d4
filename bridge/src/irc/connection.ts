/**
 * One IRC connection (irc-framework), as the adapter uses it: registration
 * with a fallback nick when the wanted one is taken, the channels it should
 * be in (re-joined after every reconnect), flood pacing, confirmation of
 * what was sent (a PING after it, answered by a PONG once the server
 * processed everything before), and reconnects with backoff.
 */
import { EventEmitter } from "node:events";
import irc, { type Client, type MessageEvent } from "irc-framework";
import type { BotLogger } from "@zimchat/plugin-sdk/bot";
import type { IrcConfig } from "./config.js";

/** How long a confirmation (PING -> PONG) may take before the connection is treated as dead. */
const confirmTimeoutMs = 30_000;

/** Options of one {@link IrcConnection}. */
export interface IrcConnectionOptions {
  config: IrcConfig;
  nick: string;
  /** Who this connection is in log lines ("relay", "puppet 3"): never a message text. */
  label: string;
  logger: BotLogger;
  /** Reconnect after a drop (the relay connection); puppets are reopened on demand instead. */
  reconnect: boolean;
  sasl?: IrcConfig["sasl"];
}

/** A token bucket: `burst` lines at once, then one per `intervalMs`. */
class Pacer {
  private tokens: number;
  private readonly waiting: { run: () => void; fail: (e: Error) => void }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly burst: number,
    private readonly intervalMs: number,
  ) {
    this.tokens = burst;
  }

  /** Runs `write` when the bucket allows it. */
  send(write: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({
        run: () => {
          write();
          resolve();
        },
        fail: reject,
      });
      this.drain();
    });
  }

  private drain(): void {
    while (this.tokens > 0 && this.waiting.length) {
      this.tokens -= 1;
      this.waiting.shift()!.run();
    }
    if (this.timer === null && this.tokens < this.burst) {
      this.timer = setInterval(() => {
        this.tokens = Math.min(this.burst, this.tokens + 1);
        this.drain();
        if (this.tokens === this.burst && !this.waiting.length) {
          clearInterval(this.timer!);
          this.timer = null;
        }
      }, this.intervalMs);
    }
  }

  /** Drops what waits (the connection closed): each waiting send rejects. */
  clear(error: Error): void {
    for (const w of this.waiting.splice(0)) w.fail(error);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

/**
 * Events: `ready` (registered, channels joined and confirmed), `closed`
 * (reason), `message` (a PRIVMSG or ACTION in a channel), `joinFailed`
 * (channel, reason).
 */
export class IrcConnection extends EventEmitter {
  private client: Client | null = null;
  private registered = false;
  private stopped = false;
  private attempt = 0;
  private retry: NodeJS.Timeout | null = null;
  private nickAttempt = 0;
  private pingSeq = 0;
  private readonly pending = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly pacer: Pacer;
  /** The channels this connection should be in. */
  readonly channels = new Set<string>();
  /** Reconnects after the first connection. */
  reconnects = 0;
  /** Last time something was said through it (ms since the epoch): puppets are reaped by it. */
  lastUsed = Date.now();

  constructor(private readonly options: IrcConnectionOptions) {
    super();
    this.pacer = new Pacer(options.config.pacing.burst, options.config.pacing.intervalMs);
  }

  /** The nick the server knows this connection by (the wanted one, or a fallback). */
  get nick(): string {
    return this.client?.user.nick ?? this.options.nick;
  }

  get ready(): boolean {
    return this.registered;
  }

  /** Connects (and, for the relay, keeps reconnecting until `stop()`). */
  start(): void {
    this.stopped = false;
    this.open();
  }

  private open(): void {
    const { config } = this.options;
    const client = new irc.Client();
    this.client = client;
    this.nickAttempt = 0;
    client.on("registered", () => {
      this.attempt = 0;
      this.registered = true;
      for (const channel of this.channels) client.join(channel);
      // JOINs are processed in order: the PONG says they were.
      this.confirm().then(
        () => this.emit("ready"),
        () => {},
      );
    });
    client.on("nick in use", () => {
      if (this.registered) return;
      this.nickAttempt += 1;
      client.changeNick(fallbackNick(this.options.nick, this.nickAttempt));
    });
    client.on("pong", (event: { message: string }) => {
      const waiter = this.pending.get(event.message);
      if (!waiter) return;
      this.pending.delete(event.message);
      waiter.resolve();
    });
    client.on("privmsg", (event: MessageEvent) => this.onMessage(event));
    client.on("action", (event: MessageEvent) => this.onMessage(event));
    client.on("irc error", (event: { error: string; channel?: string; reason?: string }) => {
      if (event.channel) {
        this.channels.delete(event.channel.toLowerCase());
        this.emit("joinFailed", event.channel.toLowerCase(), event.error);
      }
      this.options.logger.warn(`IRC ${this.options.label}: server error ${event.error}`);
    });
    client.on("kick", (event: { kicked: string; channel: string }) => {
      if (event.kicked.toLowerCase() !== this.nick.toLowerCase()) return;
      const channel = event.channel.toLowerCase();
      this.options.logger.warn(`IRC ${this.options.label}: kicked from ${channel}`);
      this.emit("kicked", channel);
    });
    client.on("close", () => this.onClose(client, "closed"));
    client.on("socket close", () => this.onClose(client, "socket closed"));
    client.connect({
      host: config.host,
      port: config.port,
      tls: config.tls,
      nick: this.options.nick,
      username: "zimchat",
      gecos: "ZimChat bridge: relays an end-to-end encrypted group, decrypted",
      auto_reconnect: false,
      version: null,
      ...(this.options.sasl ? { account: this.options.sasl } : {}),
    });
  }

  private onMessage(event: MessageEvent): void {
    if (!/^[#&]/.test(event.target)) return; // direct messages to the bridge are not relayed
    this.emit("message", event);
  }

  private onClose(client: Client, reason: string): void {
    if (this.client !== client) return;
    this.client = null;
    const wasReady = this.registered;
    this.registered = false;
    const error = new Error(`IRC connection ${reason}`);
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
    this.pacer.clear(error);
    client.removeAllListeners();
    this.emit("closed", reason, wasReady);
    if (this.stopped || !this.options.reconnect) return;
    const { minMs, maxMs } = this.options.config.reconnect;
    const delay = Math.min(maxMs, minMs * 2 ** this.attempt) * (1 + Math.random() * 0.5);
    this.attempt += 1;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.reconnects += 1;
      this.open();
    }, delay);
  }

  join(channel: string): void {
    this.channels.add(channel);
    if (this.registered) this.client?.join(channel);
  }

  part(channel: string): void {
    this.channels.delete(channel);
    if (this.registered) this.client?.part(channel, "ZimChat bridge: no longer approved");
  }

  /** Says one line, paced. Rejects when the connection is not registered, or closes before the line's turn. */
  async say(target: string, line: string): Promise<void> {
    if (!this.registered || !this.client) throw new Error("IRC connection not ready");
    const client = this.client;
    this.lastUsed = Date.now();
    await this.pacer.send(() => client.raw("PRIVMSG", target, line));
  }

  /** Resolves once the server answered a PING sent after everything written so far. */
  confirm(): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new Error("IRC connection not ready"));
    const token = `zimchat-${++this.pingSeq}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new Error("IRC server did not answer a PING"));
        client.connection.end();
      }, confirmTimeoutMs);
      this.pending.set(token, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      // Paced like the lines before it, so it cannot overtake them.
      this.pacer.send(() => client.raw("PING", token)).catch(() => {});
    });
  }

  /** Quits and stops reconnecting. */
  async stop(message = "ZimChat bridge stopping"): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.pacer.stop();
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const done = setTimeout(() => {
        client.connection.end();
        resolve();
      }, 2_000);
      this.once("closed", () => {
        clearTimeout(done);
        resolve();
      });
      client.quit(message);
    });
  }
}

/** The nick to try after `base` was taken `attempt` times: `base_`, then `base2`, `base3`, ... within 30 characters. */
export function fallbackNick(base: string, attempt: number): string {
  const suffix = attempt === 1 ? "_" : String(attempt);
  return base.slice(0, 30 - suffix.length) + suffix;
}
