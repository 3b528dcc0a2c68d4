/**
 * The IRC bridge end to end: a real in-process homeserver, real ZimChat
 * devices (libsignal), the bridge bot, and a real ngircd with an
 * irc-framework user in the channel.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { MemoryDeviceStore, ZimClient, bridgeBanner } from "@zimchat/client";
import { MemoryLogger, testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";
import { chatServerSkip, ngircdAvailable, startNgircd, type NgircdServer } from "@zimchat/testing/chat-servers";
import { IrcUser, lines, nextWith } from "./support/irc-user.js";
import { Bridge, bridgeStoreFileName, createBridge, ircConfigSchema, type IrcConfigInput } from "../src/index.js";

const skip = chatServerSkip(ngircdAvailable());

describe("IRC bridge against a real ngircd", { skip }, () => {
  let ngircd: NgircdServer;
  let hs: TestHomeserver;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let bob2: ZimClient;
  let dave: IrcUser;
  let bridge: Bridge;
  let logger: MemoryLogger;
  let groupId: string;
  let bridgeDir: string;

  const ircConfig = (extra: Partial<IrcConfigInput> = {}): IrcConfigInput => ({
    host: "127.0.0.1",
    port: ngircd.port,
    nick: "zimbridge",
    reconnect: { minMs: 1_000, maxMs: 2_000 },
    ...extra,
  });

  before(async () => {
    ngircd = await startNgircd({ channels: ["#club", "#other"] });
    hs = await testHomeserver();
    alice = await hs.user("alice");
    bob = await hs.user("bob");
    carol = await hs.user("carol");
    let approval: Promise<void> | undefined;
    bob2 = await ZimClient.link({
      serverUrl: hs.url,
      store: new MemoryDeviceStore(),
      pollIntervalMs: 50,
      onLinkCode: ({ uri }) => {
        approval = bob.client.approveLink(uri);
      },
    });
    await approval;
    await bob2.connect();
    dave = new IrcUser(ngircd, "dave", "#club");
    await dave.connect();
    logger = new MemoryLogger();
    bridge = await hs.bot(
      (options) => {
        bridgeDir = options.dir;
        return createBridge(
          {
            network: "irc",
            zimchat: { dir: options.dir, server: options.server, username: "ircbridge", allowInsecureHttp: false },
            irc: ircConfigSchema.parse(ircConfig()),
          },
          { logger: options.logger, handleSignals: false },
        );
      },
      { logger },
    );
  });
  after(async () => {
    dave?.close();
    await bob2?.close();
    await hs?.close();
    await ngircd?.stop();
  });

  it("refuses to relay in a group no admin approved, and says so once", async () => {
    const group = await alice.createGroup("unapproved", ["bob", "ircbridge"]);
    await alice.send(`group:${group.id}`, "secret plans");
    const refusal = await alice.nextMessage({ conversation: `group:${group.id}` });
    assert.match(refusal.text, /relay nothing from this group: no group admin approved it/);
    await alice.send(`group:${group.id}`, "more secret plans");
    await bob.nextMessage({ conversation: `group:${group.id}` }); // alice's first
    await bob.nextMessage({ conversation: `group:${group.id}` }); // the refusal
    await bob.nextMessage({ conversation: `group:${group.id}` }); // alice's second
    await alice.expectNoMessage(1_500); // no second refusal at the same revision
    assert.equal(bridge.counters.refused, 2);
    assert.equal(bridge.counters.toNetwork, 0);
    assert.deepEqual(lines(dave, "zimbridge"), [], "nothing reached IRC");
  });

  it("an admin's /bridge approves it: every member's client shows the banner, on every device", async () => {
    const updates = [bob, carol].map((u) => u.nextEvent("groupUpdated"));
    const group = await alice.createGroup("club", ["bob", "carol"]);
    groupId = group.id;
    await Promise.all(updates);
    const events = [bob, carol].map((u) => u.nextEvent("bridgesChanged"));
    const onBob2 = new Promise<unknown>((resolve) => bob2.once("bridgesChanged", resolve));
    await alice.client.bridgeGroup(groupId, { bot: "ircbridge", network: "irc", target: "#club" });
    for (const [event] of await Promise.all(events)) {
      assert.equal(event.groupId, groupId);
      assert.equal(event.added.length, 1);
      assert.equal(
        bridgeBanner(event.added[0]!),
        "Bridged: messages in this group are decrypted by ircbridge and sent in plaintext to IRC #club. Attachments are not bridged.",
      );
    }
    await onBob2;
    assert.equal(bob2.groupBridges(groupId).length, 1, "bob's second device knows the bridge too");
    // The bot joins the channel and announces itself in the group.
    await dave.until("the bridge joins #club", () => dave.joined.has("zimbridge"));
    const notice = await carol.nextMessage({ conversation: `group:${groupId}` });
    assert.match(notice.text, /^Bridging this group to IRC #club/);
    await alice.nextMessage({ conversation: `group:${groupId}` });
    await bob.nextMessage({ conversation: `group:${groupId}` });
  });

  it("relays both ways, with names", async () => {
    await alice.send(`group:${groupId}`, "hello IRC, from an E2EE group");
    await dave.until("alice's line", () => lines(dave, "zimbridge").includes("<alice> hello IRC, from an E2EE group"));
    dave.say("hi ZimChat");
    for (const u of [alice, bob, carol]) {
      let m = await u.nextMessage({ conversation: `group:${groupId}` });
      if (m.text.startsWith("hello IRC")) m = await u.nextMessage({ conversation: `group:${groupId}` });
      assert.equal(m.text, "dave (IRC): hi ZimChat");
      assert.equal(m.from, bridge.bot.uuid);
    }
    // Bob's second device gets it too (it is a member device like any other).
    for (let i = 0; ; i++) {
      const stored = await bob2.conversation(`group:${groupId}`);
      if (stored.some((m) => m.text === "dave (IRC): hi ZimChat")) break;
      assert.ok(i < 200, "bob's second device never got the IRC line");
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it("the IRC server killed and restarted: lines sent meanwhile arrive once, in order, and the bridge hears IRC again", async () => {
    const before = lines(dave, "zimbridge").length;
    const reconnectsBefore = bridge.status().reconnects;
    dave.close();
    await ngircd.kill();
    await logger.waitFor(/IRC: disconnected/);
    for (const n of [1, 2, 3]) await alice.send(`group:${groupId}`, `while IRC was down ${n}`);
    await bob.nextMessage({ conversation: `group:${groupId}` });
    await ngircd.restart();
    dave = new IrcUser(ngircd, "dave", "#club");
    await dave.connect();
    await dave.until("the three queued lines", () => lines(dave, "zimbridge").length >= 3);
    assert.deepEqual(lines(dave, "zimbridge"), [
      "<alice> while IRC was down 1",
      "<alice> while IRC was down 2",
      "<alice> while IRC was down 3",
    ]);
    assert.ok(before > 0);
    assert.ok(bridge.status().reconnects > reconnectsBefore, "the relay connection reconnected");
    await alice.send(`group:${groupId}`, "after the restart");
    await dave.until("the next line", () => lines(dave, "zimbridge").includes("<alice> after the restart"));
    assert.equal(lines(dave, "zimbridge").length, 4, "nothing was sent twice");
    dave.say("back again");
    await nextWith(carol, groupId, "dave (IRC): back again");
  });

  it("keeps no message text in its logs or its store once IRC confirmed", async () => {
    await bridge.idle();
    // The last line reached dave before its PONG reached the bridge: the row goes once the PONG is in.
    for (let i = 0; bridge.status().queued > 0; i++) {
      assert.ok(i < 100, "the outbox never drained");
      await new Promise((r) => setTimeout(r, 50));
    }
    const all = logger.lines.map((l) => l.message).join("\n");
    for (const text of ["hello IRC", "hi ZimChat", "while IRC was down", "secret plans"])
      assert.ok(!all.includes(text), `the log holds "${text}"`);
    assert.equal(bridge.status().queued, 0);
    const store = readdirSync(bridgeDir).filter((f) => f.startsWith(bridgeStoreFileName));
    for (const file of store) {
      const bytes = readFileSync(join(bridgeDir, file)).toString("latin1");
      for (const text of ["hello IRC, from an E2EE group", "while IRC was down"])
        assert.ok(!bytes.includes(text), `${file} holds "${text}"`);
    }
  });
});
