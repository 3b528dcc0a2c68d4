/** Test helper: an XMPP user (@xmpp/client) in one MUC room, keeping every groupchat message it hears. */
import { client as xmppClient, xml, type Element, type XmppClient } from "@xmpp/client";
import type { ProsodyServer } from "@zimchat/testing/chat-servers";

const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

/** A groupchat message heard: the occupant nick and the body (history replayed on join included). */
export interface Heard {
  nick: string;
  body: string;
}

export class XmppUser {
  private entity: XmppClient | null = null;
  readonly heard: Heard[] = [];

  constructor(
    private readonly server: ProsodyServer,
    readonly username: string,
    private readonly room: string,
  ) {}

  /** Logs in (retrying while the server comes up) and joins the room as `username`. */
  async join(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.tryJoin();
        return;
      } catch (error) {
        await this.leave();
        if (Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private async tryJoin(): Promise<void> {
    const entity = xmppClient({
      service: `xmpp://127.0.0.1:${this.server.c2sPort}`,
      domain: this.server.domain,
      username: this.username,
      password: `${this.username}-pw`,
      resource: "test",
    });
    this.entity = entity;
    entity.on("error", () => {});
    entity.on("stanza", (s: Element) => {
      if (!s.is("message") || s.attrs.type !== "groupchat") return;
      const body = s.getChildText("body");
      if (body === null || !s.attrs.from?.startsWith(`${this.room}/`)) return;
      this.heard.push({ nick: s.attrs.from.slice(this.room.length + 1), body });
    });
    await entity.start();
    const joined = new Promise<Element>((resolve) => {
      entity.on("stanza", (s: Element) => {
        if (!s.is("presence") || s.attrs.from !== `${this.room}/${this.username}`) return;
        const self = s
          .getChild("x", NS_MUC_USER)
          ?.getChildren("status")
          .some((c) => c.attrs.code === "110");
        if (s.attrs.type === "error" || self) resolve(s);
      });
    });
    await entity.send(
      xml("presence", { to: `${this.room}/${this.username}` }, xml("x", { xmlns: "http://jabber.org/protocol/muc" })),
    );
    const presence = await joined;
    if (presence.attrs.type === "error") throw new Error(`joining ${this.room} failed: ${presence.toString()}`);
  }

  say(text: string): Promise<void> {
    return this.entity!.send(xml("message", { to: this.room, type: "groupchat" }, xml("body", {}, text)));
  }

  /** Bodies heard from occupant `nick`. */
  from(nick: string): string[] {
    return this.heard.filter((h) => h.nick === nick).map((h) => h.body);
  }

  /** Waits until `check` holds (polled), or fails naming `what` and what was heard. */
  async until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline)
        throw new Error(`${this.username}: ${what} did not happen; heard ${JSON.stringify(this.heard)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async leave(): Promise<void> {
    const entity = this.entity;
    this.entity = null;
    if (!entity) return;
    entity.removeAllListeners("stanza");
    await entity.stop().catch(() => {});
  }
}
