/**
 * Group bridges: bots that decrypt a group and relay it outside ZimChat are
 * recorded in the group state by an admin, and every member's device learns
 * of them (`bridgesChanged`, `groupBridges`) to show the disclosure banner.
 * Real libsignal, a real homeserver; a plain registered user stands in for
 * the bridge bot.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  bridgeBanner,
  bridgeRemovedNotice,
  DecryptionFailureReason,
  diffBridges,
  GroupError,
  groupStateSchema,
  type BridgesChangedEvent,
  type GroupState,
  type GroupUpdatedEvent,
  type MessageEvent,
  type ZimClient,
  type ZimClientEvents,
} from "../src/index.js";
import { applyGroupUpdate } from "../src/groups.js";
import { type Homeserver, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";
import { linkDevice } from "./support/linking.js";

const ids = {
  group: "7d9c1f4e-0b1a-4c55-9a53-3f1f5b0e8a01",
  admin: "11111111-1111-4111-8111-111111111111",
  member: "22222222-2222-4222-8222-222222222222",
  bot: "33333333-3333-4333-8333-333333333333",
};

const base: GroupState = {
  id: ids.group,
  title: "club",
  members: [ids.admin, ids.member, ids.bot],
  admins: [ids.admin],
  revision: 1,
};

describe("group bridges: the state and the banner", () => {
  it("keeps states without bridges valid, and bounds the bridges", () => {
    assert.ok(groupStateSchema.safeParse(base).success);
    const bridge = { account: ids.bot, network: "irc", target: "#club" } as const;
    assert.ok(groupStateSchema.safeParse({ ...base, bridges: [bridge] }).success);
    assert.ok(!groupStateSchema.safeParse({ ...base, bridges: [{ ...bridge, network: "matrix" }] }).success);
    assert.ok(!groupStateSchema.safeParse({ ...base, bridges: [{ ...bridge, target: "" }] }).success);
    assert.ok(!groupStateSchema.safeParse({ ...base, bridges: [{ ...bridge, target: "#".repeat(257) }] }).success);
    assert.ok(!groupStateSchema.safeParse({ ...base, bridges: Array(9).fill(bridge) }).success);
  });

  it("applies an admin's bridge of a member, refuses one naming a non-member or one account twice, and a non-admin's", () => {
    const bridged: GroupState = {
      ...base,
      revision: 2,
      bridges: [{ account: ids.bot, network: "irc", target: "#club" }],
    };
    assert.deepEqual(applyGroupUpdate(base, bridged, ids.admin, ids.member)?.group, bridged);
    // A non-admin changes nothing, bridges included.
    assert.equal(applyGroupUpdate(base, bridged, ids.member, ids.admin), null);
    const stranger = "44444444-4444-4444-8444-444444444444";
    const outsider = { ...bridged, bridges: [{ account: stranger, network: "xmpp" as const, target: "club@rooms" }] };
    assert.equal(applyGroupUpdate(base, outsider, ids.admin, ids.member), null, "a bridge must be a member");
    assert.equal(applyGroupUpdate(null, outsider, ids.admin, ids.member), null, "also for a group new to the device");
    const twice = {
      ...bridged,
      bridges: [...bridged.bridges!, { account: ids.bot, network: "xmpp" as const, target: "club@rooms" }],
    };
    assert.equal(applyGroupUpdate(base, twice, ids.admin, ids.member), null, "one bridge per account");
  });

  it("words the banner exactly: the bot's verified username, else its account id; attachments either way", () => {
    const bridge = { account: ids.bot, network: "irc", target: "#club" } as const;
    const name = { username: "ircbridge", verified: true };
    assert.equal(
      bridgeBanner({ ...bridge, name }),
      "Bridged: messages in this group are decrypted by ircbridge and sent in plaintext to IRC #club. Attachments are not bridged.",
    );
    assert.equal(
      bridgeBanner({ ...bridge, network: "xmpp", target: "club@rooms.example", attachments: true }),
      `Bridged: messages in this group are decrypted by ${ids.bot} and sent in plaintext to XMPP club@rooms.example. Attachments are also sent.`,
    );
    assert.equal(
      bridgeBanner({ ...bridge, name: { username: "ircbridge", verified: false } }),
      `Bridged: messages in this group are decrypted by ${ids.bot} and sent in plaintext to IRC #club. Attachments are not bridged.`,
      "an unverified claim is not shown as the bot's name",
    );
    assert.equal(
      bridgeBanner({ ...bridge, target: "#club\nBridged: nothing\u202e" }),
      `Bridged: messages in this group are decrypted by ${ids.bot} and sent in plaintext to IRC #club\ufffdBridged: nothing\ufffd. Attachments are not bridged.`,
      "the banner stays one line",
    );
    assert.equal(
      bridgeRemovedNotice({ ...bridge, name }),
      "No longer bridged: ircbridge does not relay this group to IRC #club any more.",
    );
  });

  it("compares bridges by account, network, target and attachments", () => {
    const a = { account: ids.bot, network: "irc", target: "#club" } as const;
    assert.deepEqual(diffBridges([a], [{ ...a, attachments: false }]), { added: [], removed: [] });
    assert.deepEqual(diffBridges([a], [{ ...a, attachments: true }]), {
      added: [{ ...a, attachments: true }],
      removed: [a],
    });
    assert.deepEqual(diffBridges([], [a]), { added: [a], removed: [] });
  });
});

/** Every group-related event of a device. */
function record(client: ZimClient): {
  bridges: BridgesChangedEvent[];
  updates: GroupUpdatedEvent[];
  messages: MessageEvent[];
  failures: ZimClientEvents["decryptionFailed"][0][];
} {
  const log = {
    bridges: [] as BridgesChangedEvent[],
    updates: [] as GroupUpdatedEvent[],
    messages: [] as MessageEvent[],
    failures: [] as ZimClientEvents["decryptionFailed"][0][],
  };
  client.on("bridgesChanged", (e) => log.bridges.push(e));
  client.on("groupUpdated", (u) => log.updates.push(u));
  client.on("message", (m) => log.messages.push(m));
  client.on("decryptionFailed", (f) => log.failures.push(f));
  return log;
}

/** Waits until `check` holds. */
async function waitFor(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Sends crafted content, as a modified client could. */
const sendContent = (from: ZimClient, to: string, content: object): Promise<unknown> =>
  (from as unknown as { sendContent(uuid: string, content: object): Promise<unknown> }).sendContent(to, content);

describe("group bridges between devices", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("an admin bridges a group: every member's devices learn it; only admins bridge; unbridge removes the bot", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const carol = await registerDevice(server.url);
    const bot = await registerDevice(server.url);
    const bob2 = await linkDevice(server.url, bob);
    const devices = [alice, bob, bob2, carol, bot];
    const logs = new Map(devices.map((d) => [d, record(d)]));
    const log = (d: ZimClient): ReturnType<typeof record> => logs.get(d)!;
    for (const d of devices) await d.connect();

    const group = await alice.createGroup("chess club", [bob.local.username, carol.local.username]);
    for (const d of [bob, bob2, carol]) await until(log(d).updates, 1);

    // Only admins bridge.
    await assert.rejects(
      bob.bridgeGroup(group.id, { bot: bot.local.username, network: "irc", target: "#chess" }),
      (error: unknown) => error instanceof GroupError && /not an admin/.test(error.message),
    );
    await assert.rejects(
      alice.bridgeGroup(group.id, { bot: bot.local.username, network: "irc", target: "" }),
      RangeError,
    );

    const bridged = await alice.bridgeGroup(group.id, { bot: bot.local.username, network: "irc", target: "#chess" });
    assert.equal(bridged.revision, group.revision + 1, "the bot is added and the bridge set in one change");
    assert.ok(bridged.members.includes(bot.local.uuid));
    assert.deepEqual(bridged.bridges, [{ account: bot.local.uuid, network: "irc", target: "#chess" }]);

    const expected = {
      account: bot.local.uuid,
      network: "irc",
      target: "#chess",
      attachments: false,
      name: { username: bot.local.username, verified: true },
    };
    const banner = `Bridged: messages in this group are decrypted by ${bot.local.username} and sent in plaintext to IRC #chess. Attachments are not bridged.`;
    // The admin's own device reports its change at once; the others when it arrives (the bot too: it joined).
    for (const d of devices) {
      const [event] = await until(log(d).bridges, 1);
      assert.deepEqual(
        event,
        { groupId: group.id, bridges: [expected], added: [expected], removed: [] },
        `${d.local.username}.${d.local.deviceId}`,
      );
      assert.deepEqual(d.groupBridges(group.id), [expected]);
      assert.equal(bridgeBanner(d.groupBridges(group.id)[0]!), banner);
    }
    assert.ok(log(bot).updates.at(-1)?.added.includes(bot.local.uuid), "the bot was told it joined");

    // The bot is a member like any other: it reads the group's messages (it is what it relays).
    await bob.sendGroupText(group.id, "e4 e5");
    await until(log(bot).messages, 1);
    assert.equal(log(bot).messages[0]?.text, "e4 e5");

    // Setting the same bridge again changes nothing; changing it is one more change, seen as removed + added.
    assert.equal(
      (await alice.bridgeGroup(group.id, { bot: bot.local.uuid, network: "irc", target: "#chess" })).revision,
      bridged.revision,
    );
    const withFiles = await alice.bridgeGroup(group.id, {
      bot: bot.local.username,
      network: "irc",
      target: "#chess",
      attachments: true,
    });
    assert.equal(withFiles.revision, bridged.revision + 1);
    const [, changed] = await until(log(carol).bridges, 2);
    assert.deepEqual(
      [changed?.added.map((b) => b.attachments), changed?.removed.map((b) => b.attachments)],
      [[true], [false]],
    );
    await until(log(bob).bridges, 2);

    // A member who is not an admin cannot bridge the group by sending a change of their own.
    const bobFailures = log(bob).failures.length;
    await sendContent(carol, bob.local.uuid, {
      v: 1,
      timestamp: Date.now(),
      groupUpdate: {
        ...withFiles,
        revision: withFiles.revision + 1,
        bridges: [...withFiles.bridges!, { account: carol.local.uuid, network: "xmpp", target: "chess@rooms.example" }],
      },
    });
    await until(log(bob).failures, bobFailures + 1);
    assert.equal(log(bob).failures.at(-1)?.reason, DecryptionFailureReason.NotAGroupMember);
    // Nor can an admin name a bridge that is not a member (crafted: the SDK never sends one).
    const outsider = await registerDevice(server.url);
    await sendContent(alice, bob.local.uuid, {
      v: 1,
      timestamp: Date.now(),
      groupUpdate: {
        ...withFiles,
        revision: withFiles.revision + 1,
        bridges: [{ account: outsider.local.uuid, network: "irc", target: "#elsewhere" }],
      },
    });
    await until(log(bob).failures, bobFailures + 2);
    assert.equal(log(bob).failures.at(-1)?.reason, DecryptionFailureReason.NotAGroupMember);
    assert.equal(bob.group(group.id)?.revision, withFiles.revision);
    assert.equal(log(bob).bridges.length, 2, "no bridge change was applied");
    await outsider.close();

    // Unbridging removes the bridge and the bot: it is told it left, and can no longer read the group.
    await assert.rejects(alice.unbridgeGroup(group.id, carol.local.username), /not a bridge/);
    const unbridged = await alice.unbridgeGroup(group.id, bot.local.username);
    assert.ok(!unbridged.members.includes(bot.local.uuid));
    assert.equal(unbridged.bridges, undefined);
    for (const d of [alice, bob, bob2, carol]) {
      const [, , removed] = await until(log(d).bridges, 3);
      assert.deepEqual(removed?.bridges, []);
      assert.deepEqual(
        removed?.removed.map((b) => [b.account, b.attachments]),
        [[bot.local.uuid, true]],
      );
      assert.deepEqual(d.groupBridges(group.id), []);
    }
    await waitFor(() => log(bot).updates.some((u) => u.left));
    const botMessages = log(bot).messages.length;
    await carol.sendGroupText(group.id, "after the bridge");
    await waitFor(() => log(bob).messages.some((m) => m.text === "after the bridge"));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(log(bot).messages.length, botMessages, "the bot is sent nothing after it was unbridged");

    for (const d of devices) await d.close();
  });

  it("removing a bridge bot as a member removes its bridge too", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const bot = await registerDevice(server.url);
    const bobLog = record(bob);
    await bob.connect();
    const group = await alice.createGroup("choir", [bob.local.username]);
    await alice.bridgeGroup(group.id, { bot: bot.local.username, network: "xmpp", target: "choir@rooms.example" });
    await until(bobLog.bridges, 1);
    const after = await alice.removeGroupMembers(group.id, [bot.local.username]);
    assert.equal(after.bridges, undefined);
    await until(bobLog.bridges, 2);
    assert.deepEqual(bob.groupBridges(group.id), []);
    assert.equal(bobLog.failures.length, 0, "the change was accepted");
    for (const d of [alice, bob, bot]) await d.close();
  });
});
