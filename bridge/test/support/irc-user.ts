/** Test helpers: an IRC user (irc-framework) that keeps what it hears, and waiting for members' messages. */
import irc, { type Client, type MessageEvent } from "irc-framework";
import type { TestUser } from "@zimchat/testing";
import type { NgircdServer } from "@zimchat/testing/chat-servers";

/** An IRC user in a channel that keeps what it hears, and reconnects when asked. */
export class IrcUser {
  client!: Client;
  /** Every PRIVMSG heard, with when it arrived (ms since the epoch). */
  readonly heard: (MessageEvent & { time: number })[] = [];
  readonly joined = new Set<string>();
  /** Nicks seen quitting (lower case). */
  readonly quit = new Set<string>();
  private waiters = new Set<() => void>();
  constructor(
    private readonly server: NgircdServer,
    readonly nick: string,
    private readonly channel: string,
  ) {}

  async connect(): Promise<void> {
    for (;;) {
      try {
        await this.once();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private once(): Promise<void> {
    return new Promise((resolve, reject) => {
      const client = new irc.Client();
      this.client = client;
      client.on("privmsg", (e: MessageEvent) => {
        this.heard.push({ ...e, time: Date.now() });
        this.notify();
      });
      client.on("join", (e: { nick: string; channel: string }) => {
        this.joined.add(e.nick.toLowerCase());
        if (e.nick === this.nick) resolve();
        this.notify();
      });
      client.on("quit", (e: { nick: string }) => {
        this.quit.add(e.nick.toLowerCase());
        this.notify();
      });
      client.on("registered", () => client.join(this.channel));
      client.on("close", () => reject(new Error("closed")));
      client.on("socket close", () => reject(new Error("closed")));
      client.connect({ host: "127.0.0.1", port: this.server.port, nick: this.nick, auto_reconnect: false });
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Waits until `check` holds (checked on every line heard and join), or fails after `timeoutMs`. */
  async until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
    if (check()) return;
    await new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        if (!check()) return;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(`${this.nick}: ${what} did not happen; heard ${JSON.stringify(this.heard.map((h) => h.message))}`),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  say(text: string): void {
    this.client.say(this.channel, text);
  }

  close(): void {
    this.client.removeAllListeners();
    this.client.connection.end();
  }
}

/** Reads a member's messages in a group until one has `text` (or matches it); fails if none comes in time. */
export async function nextWith(user: TestUser, groupId: string, text: string | RegExp): Promise<string> {
  for (;;) {
    const m = await user.nextMessage({ conversation: `group:${groupId}`, timeoutMs: 30_000 });
    if (typeof text === "string" ? m.text === text : text.test(m.text)) return m.text;
  }
}

export const lines = (user: IrcUser, from: string): string[] =>
  user.heard.filter((h) => h.nick.toLowerCase() === from.toLowerCase()).map((h) => h.message);
