/**
 * The XMPP bridge end to end: a real in-process homeserver, real ZimChat
 * devices, the bridge bot as an XEP-0114 component of a real Prosody, and an
 * XMPP user in the room.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { bridgeBanner } from "@zimchat/client";
import { MemoryLogger, testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";
import { chatServerSkip, prosodyAvailable, startProsody, type ProsodyServer } from "@zimchat/testing/chat-servers";
import { createBridge, xmppConfigSchema, type Bridge } from "../src/index.js";
import { nextWith } from "./support/irc-user.js";
import { XmppUser } from "./support/xmpp-user.js";

const skip = chatServerSkip(prosodyAvailable());

describe("XMPP bridge against a real Prosody", { skip }, () => {
  let prosody: ProsodyServer;
  let hs: TestHomeserver;
  let alice: TestUser;
  let bob: TestUser;
  let xena: XmppUser;
  let bridge: Bridge;
  let logger: MemoryLogger;
  let groupId: string;
  let room: string;

  before(async () => {
    prosody = await startProsody({
      component: { name: "bridge.example.test", secret: "component-secret" },
      users: [{ username: "xena", password: "xena-pw" }],
    });
    room = `club@${prosody.mucDomain}`;
    hs = await testHomeserver();
    alice = await hs.user("alice");
    bob = await hs.user("bob");
    logger = new MemoryLogger();
    bridge = await hs.bot(
      (options) =>
        createBridge(
          {
            network: "xmpp",
            zimchat: { dir: options.dir, server: options.server, username: "xmppbridge", allowInsecureHttp: false },
            xmpp: xmppConfigSchema.parse({
              service: `xmpp://127.0.0.1:${prosody.componentPort}`,
              domain: "bridge.example.test",
              secret: "component-secret",
              mucDomain: prosody.mucDomain,
              reconnect: { minMs: 200, maxMs: 1_000 },
            }),
          },
          { logger: options.logger, handleSignals: false },
        ),
      { logger },
    );
  });
  after(async () => {
    await xena?.leave();
    await hs?.close();
    await prosody?.stop();
  });

  it("an admin bridges a group to a new room: the bridge creates and unlocks it, members see the banner", async () => {
    const group = await alice.createGroup("club", ["bob"]);
    groupId = group.id;
    const changed = bob.nextEvent("bridgesChanged");
    await alice.client.bridgeGroup(groupId, { bot: "xmppbridge", network: "xmpp", target: "club" });
    const [event] = await changed;
    assert.equal(
      bridgeBanner(event.added[0]!),
      `Bridged: messages in this group are decrypted by xmppbridge and sent in plaintext to XMPP club. Attachments are not bridged.`,
    );
    for (const u of [alice, bob]) await nextWith(u, groupId, new RegExp(`^Bridging this group to XMPP ${room}`));
    // The room was new and locked: an XMPP user can join it only because the bridge unlocked it.
    xena = new XmppUser(prosody, "xena", room);
    await xena.join();
  });

  it("relays both ways: each member is their own occupant, the XMPP user appears by occupant name", async () => {
    await alice.send(`group:${groupId}`, "hello XMPP, from an E2EE group");
    await bob.send(`group:${groupId}`, "and hello from bob");
    await xena.until("both lines", () => xena.from("alice").length + xena.from("bob").length >= 2);
    assert.deepEqual(xena.from("alice"), ["hello XMPP, from an E2EE group"]);
    assert.deepEqual(xena.from("bob"), ["and hello from bob"]);
    await xena.say("hi ZimChat");
    for (const u of [alice, bob]) await nextWith(u, groupId, "xena (XMPP): hi ZimChat");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(bridge.counters.fromNetwork, 1, "the puppets' own lines were not relayed back");
  });

  it("attachments are announced by name and size only", async () => {
    const marker = "bytes that must stay in ZimChat";
    await alice.sendFile(`group:${groupId}`, Buffer.from(marker), { fileName: "plan.txt" });
    await xena.until("the file line", () => xena.from("alice").length >= 2);
    assert.equal(xena.from("alice")[1], "[file: plan.txt, 31 B]");
    assert.ok(!xena.heard.some((h) => h.body.includes(marker)));
  });

  it("Prosody killed and restarted: the component reconnects, re-creates the room, and relays again", async () => {
    const reconnects = bridge.status().reconnects;
    await xena.leave();
    await prosody.kill();
    await logger.waitFor(/XMPP: disconnected/);
    await alice.send(`group:${groupId}`, "while XMPP was down");
    await prosody.restart();
    for (let i = 0; !(bridge.status().connected && bridge.status().reconnects > reconnects); i++) {
      assert.ok(i < 400, "the component did not reconnect");
      await new Promise((r) => setTimeout(r, 50));
    }
    xena = new XmppUser(prosody, "xena", room);
    await xena.join();
    // Sent while Prosody was down: delivered after the reconnect (live, or as the room's history if it came first).
    await xena.until("the queued line", () => xena.from("alice").includes("while XMPP was down"));
    await alice.send(`group:${groupId}`, "after the restart");
    await xena.until("the next line", () => xena.from("alice").includes("after the restart"));
    assert.equal(xena.from("alice").filter((b) => b === "after the restart").length, 1);
    await xena.say("back again");
    await nextWith(bob, groupId, "xena (XMPP): back again");
    assert.ok(!logger.lines.some((l) => /hello XMPP|hi ZimChat|while XMPP|back again/.test(l.message)));
  });
});
