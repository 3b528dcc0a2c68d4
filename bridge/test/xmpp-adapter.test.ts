/**
 * The XMPP adapter against a real Prosody (loopback, throwaway): it creates
 * and unlocks a new room, puppets ZimChat authors as occupants, hears an
 * XMPP user without echoing its own puppets or replaying history, comes back
 * after Prosody crashes, and cuts or refuses long texts.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { client as xmppClient, xml, type Element, type XmppClient } from "@xmpp/client";
import { MemoryLogger } from "@zimchat/plugin-sdk/bot";
import { chatServerSkip, prosodyAvailable, startProsody, type ProsodyServer } from "@zimchat/testing/chat-servers";
import { createXmppAdapter, xmppConfigSchema } from "../src/index.js";
import type { AdapterEvents, NetworkAdapter, OutgoingMessage, RemoteMessage } from "../src/network.js";
import { XmppDisconnectedError } from "../src/xmpp/errors.js";
import { localpartOf, nickOf, PuppetNames, xmlSafe } from "../src/xmpp/names.js";
import { backoff } from "../src/xmpp/stanzas.js";

const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

/** Resolves once `check` holds (polled), or rejects naming `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Records what the adapter reports. */
class Recorder implements AdapterEvents {
  readonly messages: RemoteMessage[] = [];
  readonly disconnects: string[] = [];
  connects = 0;
  /** Puppet names by account id, as the core's store keeps them. */
  readonly names = new Map<string, string>();
  puppetName(senderId: string): string | undefined {
    return this.names.get(senderId);
  }
  puppetNamed(senderId: string, name: string): void {
    this.names.set(senderId, name);
  }
  message(message: RemoteMessage): void {
    this.messages.push(message);
  }
  connected(): void {
    this.connects++;
  }
  disconnected(reason: string): void {
    this.disconnects.push(reason);
  }
}

/** An XMPP user in the test room, keeping every groupchat message it hears. */
interface User {
  entity: XmppClient;
  heard: Element[];
}

const config = (
  server: { componentPort: number; mucDomain: string },
  extra: object = {},
): ReturnType<typeof xmppConfigSchema.parse> =>
  xmppConfigSchema.parse({
    service: `xmpp://127.0.0.1:${server.componentPort}`,
    domain: "bridge.example.test",
    secret: "component-secret",
    mucDomain: server.mucDomain,
    reconnect: { minMs: 100, maxMs: 500 },
    ...extra,
  });

describe("XMPP adapter, unit", () => {
  const offline = { componentPort: 1, mucDomain: "conference.example.test" };

  it("normalizes room JIDs and refuses what is not allowed", () => {
    const adapter = createXmppAdapter(config(offline), new MemoryLogger());
    assert.equal(adapter.normalizeTarget("Club"), "club@conference.example.test");
    assert.equal(adapter.normalizeTarget(" CLUB@Conference.Example.Test "), "club@conference.example.test");
    assert.equal(adapter.normalizeTarget("xmpp:club@conference.example.test?join"), "club@conference.example.test");
    assert.equal(adapter.normalizeTarget("club@elsewhere.test"), null);
    assert.equal(adapter.normalizeTarget("club@conference.example.test/nick"), null);
    assert.equal(adapter.normalizeTarget("#club"), "#club@conference.example.test");
    assert.equal(adapter.normalizeTarget("a b"), null);
    assert.equal(adapter.normalizeTarget(""), null);
    const limited = createXmppAdapter(
      config(offline, { allowedRooms: ["club", "x@muc.other.test"] }),
      new MemoryLogger(),
    );
    assert.equal(limited.normalizeTarget("CLUB"), "club@conference.example.test");
    assert.equal(limited.normalizeTarget("x@muc.other.test"), "x@muc.other.test");
    assert.equal(limited.normalizeTarget("other"), null);
  });

  it("derives unique puppet local parts and clean nicks", () => {
    assert.equal(localpartOf("Zoë Smith"), "zoe_smith");
    assert.equal(localpartOf("@@@"), "user");
    const names = new PuppetNames();
    assert.deepEqual(names.localpart("id-1", "Bob"), { localpart: "bob", changed: true });
    assert.deepEqual(names.localpart("id-2", "bob"), { localpart: "bob-2", changed: true });
    assert.equal(names.localpart("id-1", "Renamed").localpart, "bob", "an account keeps its puppet");
    const restarted = new PuppetNames();
    assert.deepEqual(restarted.localpart("id-2", "bob", "bob-2"), { localpart: "bob-2", changed: false });
    assert.deepEqual(restarted.localpart("id-3", "X", "Not Valid"), { localpart: "x", changed: true });
    assert.equal(nickOf("  Bob\u0007 ", "x"), "Bob");
    assert.equal(nickOf("\u0001", "fallback"), "fallback");
    assert.equal(xmlSafe("a\u0000b\uD800c\u{1F600}"), "abc\u{1F600}");
  });

  it("backs off exponentially with jitter, within the bounds", () => {
    for (let failures = 0; failures < 40; failures++) {
      const delay = backoff(failures, 1000, 60_000);
      assert.ok(delay >= 1000 && delay <= Math.min(60_000, 1000 * 2 ** failures), `${failures}: ${delay}`);
    }
    assert.equal(backoff(0, 1000, 60_000), 1000);
  });

  it("applies the defaults and rejects a bad service", () => {
    const parsed = config(offline);
    assert.equal(parsed.relayNick, "zimchat");
    assert.equal(parsed.maxMessageChars, 10_000);
    assert.equal(parsed.longMessages, "truncate");
    assert.deepEqual(
      xmppConfigSchema.parse({ service: "xmpp://h:1", domain: "b.test", secret: "s", mucDomain: "c.test" }).reconnect,
      { minMs: 1000, maxMs: 60_000 },
    );
    assert.throws(() =>
      xmppConfigSchema.parse({ service: "http://h", domain: "b.test", secret: "s", mucDomain: "c.test" }),
    );
  });

  it("cuts a long text with a notice, or refuses it, per policy", () => {
    const cut = createXmppAdapter(config(offline, { maxMessageChars: 100 }), new MemoryLogger());
    assert.deepEqual(cut.prepare("short"), { ok: true, text: "short", cut: false });
    const long = "x".repeat(12_345);
    const prepared = cut.prepare(long);
    assert.ok(prepared.ok && prepared.cut);
    assert.ok(prepared.ok && [...prepared.text].length <= 100, "fits the limit");
    assert.match(prepared.ok ? prepared.text : "", /^x+ … \[cut: 12,2\d\d more characters\]$/);
    const refuse = createXmppAdapter(config(offline, { longMessages: "refuse" }), new MemoryLogger());
    const atLimit = "y".repeat(10_000);
    assert.deepEqual(refuse.prepare(atLimit), { ok: true, text: atLimit, cut: false });
    assert.deepEqual(refuse.prepare("z".repeat(12_345)), {
      ok: false,
      reason: "too long for XMPP: 12,345 characters, the limit is 10,000",
    });
  });
});

describe("XMPP adapter on Prosody", { skip: chatServerSkip(prosodyAvailable()) }, () => {
  let server: ProsodyServer;
  let adapter: NetworkAdapter;
  const events = new Recorder();
  const logger = new MemoryLogger();
  const users: User[] = [];
  let room: string;

  async function login(username: string): Promise<User> {
    const entity = xmppClient({
      service: `xmpp://127.0.0.1:${server.c2sPort}`,
      domain: server.domain,
      username,
      password: `${username}-pw`,
      resource: "test",
    });
    entity.on("error", () => {}); // expected while Prosody is down
    const user: User = { entity, heard: [] };
    entity.on("stanza", (s: Element) => {
      if (s.is("message") && s.attrs.type === "groupchat" && s.getChildText("body") !== null) user.heard.push(s);
    });
    users.push(user);
    await entity.start();
    return user;
  }

  /** Joins the room as `nick`; rejects on a presence error (a locked room answers item-not-found). */
  async function joinRoom(user: User, nick: string): Promise<void> {
    const answer = new Promise<Element>((resolve) => {
      const listener = (s: Element): void => {
        if (!s.is("presence") || s.attrs.from !== `${room}/${nick}`) return;
        const self = s
          .getChild("x", NS_MUC_USER)
          ?.getChildren("status")
          .some((c) => c.attrs.code === "110");
        if (s.attrs.type !== "error" && !self) return;
        user.entity.off("stanza", listener);
        resolve(s);
      };
      user.entity.on("stanza", listener);
    });
    await user.entity.send(
      xml("presence", { to: `${room}/${nick}` }, xml("x", { xmlns: "http://jabber.org/protocol/muc" })),
    );
    const presence = await answer;
    if (presence.attrs.type === "error") throw new Error(`joining ${room} failed: ${presence.toString()}`);
  }

  const say = (user: User, text: string): Promise<void> =>
    user.entity.send(xml("message", { to: room, type: "groupchat" }, xml("body", {}, text)));

  const outgoing = (id: number, senderId: string, senderName: string, text: string): OutgoingMessage => ({
    id,
    target: room,
    senderId,
    senderName,
    text,
  });

  before(async () => {
    server = await startProsody({
      component: { name: "bridge.example.test", secret: "component-secret" },
      users: [{ username: "alice", password: "alice-pw" }],
    });
    room = `club@${server.mucDomain}`;
    adapter = createXmppAdapter(config(server, { maxPuppetsPerRoom: 3 }), logger);
  });

  after(async () => {
    await adapter?.stop();
    await Promise.allSettled(users.map((u) => u.entity.stop()));
    await server?.stop();
  });

  it("creates a new (locked) room, unlocks it and joins it", async () => {
    await adapter.start(events);
    await until("connected", () => events.connects === 1);
    await adapter.join("Club");
    assert.deepEqual(adapter.status().targets, [room]);
    await logger.waitFor(/created and unlocked club@conference\.example\.test/);
    const alice = await login("alice");
    await joinRoom(alice, "alice"); // item-not-found if the room were still locked
  });

  it("says each author's messages as its own occupant, and resolves once the server confirmed", async () => {
    const alice = users[0]!;
    await adapter.deliver([
      outgoing(1, "u-bob", "Bob", "hello from bob"),
      outgoing(2, "u-carol", "Carol", "hello from carol"),
    ]);
    await until("alice hears both", () => alice.heard.length >= 2);
    assert.deepEqual(
      alice.heard.map((s) => [s.attrs.from, s.getChildText("body")]),
      [
        [`${room}/Bob`, "hello from bob"],
        [`${room}/Carol`, "hello from carol"],
      ],
    );
    assert.equal(adapter.status().puppets, 2);
    assert.deepEqual(
      [...events.names],
      [
        ["u-bob", "bob"],
        ["u-carol", "carol"],
      ],
    );
    // Both puppets are in the room now, so only the confirmation is left to wait for,
    // and a stopped Prosody answers nothing: deliver() must not resolve until it runs again.
    process.kill(server.pid, "SIGSTOP");
    let settled = false;
    const delivery = adapter
      .deliver([outgoing(3, "u-bob", "Bob", "again"), outgoing(4, "u-carol", "Carol", "and again")])
      .finally(() => (settled = true));
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(settled, false, "deliver() resolved before the server answered");
    } finally {
      process.kill(server.pid, "SIGCONT");
    }
    await delivery;
    await until("alice hears them", () => alice.heard.length >= 4);
    assert.deepEqual(
      alice.heard.slice(2).map((s) => s.attrs.from),
      [`${room}/Bob`, `${room}/Carol`],
      "the same author keeps their occupant",
    );
    assert.equal(adapter.status().puppets, 2);
    assert.doesNotMatch(logger.text(), /hello from|again/, "the log carries no message text");
  });

  it("hears an XMPP user once, by occupant nick, and never its own puppets", async () => {
    const alice = users[0]!;
    await say(alice, "hello zimchat");
    await until("the message event", () => events.messages.length >= 1);
    // Let the relay's and both puppets' copies arrive before counting.
    await adapter.deliver([outgoing(5, "u-carol", "Carol", "sync")]);
    assert.deepEqual(events.messages, [{ target: room, sender: "alice", text: "hello zimchat" }]);
  });

  it("a puppet whose name is taken in the room gets a suffixed nick", async () => {
    const alice = users[0]!;
    await adapter.deliver([outgoing(6, "u-alice-zim", "alice", "I am another alice")]);
    await until("alice hears it", () => alice.heard.some((s) => s.getChildText("body") === "I am another alice"));
    const heard = alice.heard.find((s) => s.getChildText("body") === "I am another alice")!;
    assert.equal(heard.attrs.from, `${room}/alice[zim]`);
    assert.equal(events.messages.length, 1, "the suffixed puppet is not echoed either");
  });

  it("past the puppet cap, an author speaks through the relay occupant", async () => {
    const alice = users[0]!;
    assert.equal(adapter.status().puppets, 3);
    await adapter.deliver([outgoing(7, "u-dave", "Dave", "one too many")]);
    await until("alice hears it", () => alice.heard.some((s) => s.getChildText("body") === "<Dave> one too many"));
    const heard = alice.heard.find((s) => s.getChildText("body") === "<Dave> one too many")!;
    assert.equal(heard.attrs.from, `${room}/zimchat`);
    assert.equal(adapter.status().puppets, 3);
    assert.equal(events.messages.length, 1, "the relay is not echoed either");
  });

  it("does not replay the room's history on join", async () => {
    const alice = users[0]!;
    await adapter.part(room);
    assert.deepEqual(adapter.status().targets, []);
    await adapter.join(room);
    await say(alice, "after the rejoin");
    await until("the next message", () => events.messages.length >= 2);
    assert.deepEqual(
      events.messages.map((m) => m.text),
      ["hello zimchat", "after the rejoin"],
    );
  });

  it("says what to change when the server refuses the secret or does not know the component", async () => {
    const cases = [
      { extra: { secret: "wrong" }, expected: /refused the component secret/ },
      { extra: { domain: "unknown.example.test" }, expected: /has no component unknown\.example\.test/ },
    ];
    for (const { extra, expected } of cases) {
      const log = new MemoryLogger();
      const misconfigured = createXmppAdapter(config(server, extra), log);
      const recorder = new Recorder();
      await misconfigured.start(recorder);
      try {
        await log.waitFor(expected);
        assert.equal(misconfigured.status().connected, false);
        assert.equal(recorder.connects, 0);
        assert.doesNotMatch(log.text(), /wrong|component-secret/, "the log carries no secret");
      } finally {
        await misconfigured.stop();
      }
    }
  });

  it("reports a crash, refuses to deliver while down, reconnects, rejoins and delivers again", async () => {
    await users[0]!.entity.stop(); // a fresh login below takes the same resource
    await server.kill();
    await until("disconnected", () => events.disconnects.length === 1);
    assert.equal(adapter.status().connected, false);
    await assert.rejects(adapter.deliver([outgoing(8, "u-bob", "Bob", "while down")]), XmppDisconnectedError);
    await server.restart();
    await until("connected again", () => events.connects === 2, 15_000);
    const status = adapter.status();
    assert.equal(status.connected, true);
    assert.ok(status.reconnects >= 1, `reconnects: ${status.reconnects}`);
    assert.deepEqual(status.targets, [room]);
    // The restarted Prosody lost the room: the relay made it again and unlocked it, or alice could not join.
    const alice = await login("alice");
    await joinRoom(alice, "alice");
    await adapter.deliver([outgoing(9, "u-bob", "Bob", "after the crash")]);
    await until("alice hears it", () => alice.heard.some((s) => s.getChildText("body") === "after the crash"));
    assert.equal(alice.heard.find((s) => s.getChildText("body") === "after the crash")!.attrs.from, `${room}/Bob`);
  });

  it("stop() ends the connection and the reconnect loop", async () => {
    await adapter.stop();
    assert.equal(adapter.status().connected, false);
    const connects = events.connects;
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.equal(events.connects, connects);
    assert.equal(events.disconnects.length, 1, "a stop is not reported as a drop");
  });
});
