import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  MemoryDeviceStore,
  SqliteDeviceStore,
  ZimClient,
  type GroupUpdatedEvent,
  type MessageEvent,
} from "../src/index.js";
import {
  deviceDir,
  inbox,
  next,
  registerDevice,
  startHomeserver,
  until,
  type Homeserver,
} from "@zimchat/testing/spawn";

/** Counts the client's username look-ups (each one is a request to the server's directory). */
function countLookups(client: ZimClient): { count: number } {
  const counter = { count: 0 };
  const lookup = client.api.lookupUsername.bind(client.api);
  client.api.lookupUsername = async (username) => {
    counter.count++;
    return lookup(username);
  };
  return counter;
}

/** Sends raw content through the client's own encrypt-and-deliver path (a client that lies about its name). */
async function sendContent(from: ZimClient, to: string, content: object): Promise<void> {
  await (from as unknown as { sendContent(uuid: string, content: object): Promise<unknown> }).sendContent(to, content);
}

describe("sender names: usernames carried inside encrypted content, verified by the receiver", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("a first message from a stranger shows their verified username and display name; the second needs no look-up", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false, displayName: "Alice Moyo" });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const lookups = countLookups(bob);
    const toBob = inbox(bob);
    await bob.connect();
    assert.equal(bob.nameOf(alice.local.uuid), null, "Bob never looked Alice up");

    await alice.sendText(bob.local.uuid, "Hi Bob, it's Alice from the co-op");
    const [first] = await until(toBob, 1);
    assert.equal(first?.from, alice.local.uuid);
    assert.deepEqual(first?.senderName, { username: alice.local.username, displayName: "Alice Moyo", verified: true });
    assert.equal(lookups.count, 1, "the claim was checked with one look-up");
    assert.deepEqual(bob.nameOf(alice.local.uuid), {
      username: alice.local.username,
      displayName: "Alice Moyo",
      verified: true,
    });

    await alice.sendText(bob.local.uuid, "Are you coming on Saturday?");
    const [, second] = await until(toBob, 2);
    assert.equal(second?.senderName?.verified, true);
    assert.equal(lookups.count, 1, "the verified name is cached: no second look-up");

    // Kept in the SQLite store: a restarted client still knows the name without asking.
    const bobFile = join(deviceDir, `${bob.local.username}.db`);
    await bob.close();
    const reopened = new ZimClient({ store: new SqliteDeviceStore(bobFile), sendReceipts: false });
    assert.deepEqual(reopened.nameOf(alice.local.uuid), {
      username: alice.local.username,
      displayName: "Alice Moyo",
      verified: true,
    });
    await reopened.close();
    await alice.close();
  });

  it("verifies with an in-memory store too, and a display name can be changed or cleared", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await ZimClient.register({
      serverUrl: server.url,
      username: `m${process.pid}_bob`,
      store: new MemoryDeviceStore(),
      sendReceipts: false,
    });
    const toBob = inbox(bob);
    await bob.connect();
    await alice.sendText(bob.local.uuid, "no display name yet");
    await until(toBob, 1);
    assert.deepEqual(toBob[0]?.senderName, { username: alice.local.username, verified: true });
    alice.setDisplayName("Alice");
    await alice.sendText(bob.local.uuid, "now with one");
    await until(toBob, 2);
    assert.deepEqual(toBob[1]?.senderName, { username: alice.local.username, displayName: "Alice", verified: true });
    assert.deepEqual(bob.nameOf(alice.local.uuid), {
      username: alice.local.username,
      displayName: "Alice",
      verified: true,
    });
    alice.setDisplayName(null);
    await alice.sendText(bob.local.uuid, "and without");
    await until(toBob, 3);
    assert.deepEqual(toBob[2]?.senderName, { username: alice.local.username, verified: true });
    assert.throws(() => alice.setDisplayName(""), RangeError);
    await alice.close();
    await bob.close();
  });

  it("a forged claim (another account's username, or one nobody has) is marked unverified and not cached", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const mallory = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const lookups = countLookups(bob);
    const toBob = inbox(bob);
    await bob.connect();

    // Mallory's client puts Alice's username into its (encrypted) content.
    const forged = {
      v: 1,
      id: "9b2f4c1e-6a7d-4e3b-9c8f-1d2e3f4a5b6c",
      timestamp: Date.now(),
      text: "Hi, Alice here: new number",
      profile: { username: alice.local.username, displayName: "Alice" },
    };
    await sendContent(mallory, bob.local.uuid, forged);
    const [message] = await until(toBob, 1);
    assert.equal(message?.from, mallory.local.uuid);
    assert.deepEqual(message?.senderName, { username: alice.local.username, displayName: "Alice", verified: false });
    assert.equal(bob.nameOf(mallory.local.uuid), null, "the false claim is not remembered as Mallory's name");
    assert.equal(bob.nameOf(alice.local.uuid)?.username, alice.local.username, "the look-up showed whose name it is");

    // The same false claim again is not looked up again; a claim of a name nobody has is unverified too.
    await sendContent(mallory, bob.local.uuid, {
      ...forged,
      id: "0c3e5d2f-7b8e-4f4c-8d9a-2e3f4a5b6c7d",
      timestamp: Date.now(),
    });
    await until(toBob, 2);
    assert.equal(toBob[1]?.senderName?.verified, false);
    const looked = lookups.count;
    await sendContent(mallory, bob.local.uuid, {
      v: 1,
      timestamp: Date.now(),
      text: "or am I",
      profile: { username: "nobody_has_this" },
    });
    await until(toBob, 3);
    assert.deepEqual(toBob[2]?.senderName, { username: "nobody_has_this", verified: false });
    assert.equal(lookups.count, looked + 1);

    // Mallory's real name still verifies when she sends it.
    await mallory.sendText(bob.local.uuid, "fine, it's Mallory");
    await until(toBob, 4);
    assert.deepEqual(toBob[3]?.senderName, { username: mallory.local.username, verified: true });
    for (const c of [alice, mallory, bob]) await c.close();
  });

  it("groups: members who never wrote to each other are listed by verified name", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const carol = await registerDevice(server.url, undefined, { sendReceipts: false });
    const carolLookups = countLookups(carol);
    await bob.connect();
    await carol.connect();
    const toCarol = inbox(carol);
    const carolsUpdate = next<GroupUpdatedEvent>(carol, "groupUpdated");
    const bobsUpdate = next<GroupUpdatedEvent>(bob, "groupUpdated");

    // Alice knows both by username; Bob and Carol know nobody.
    const group = await alice.createGroup("Stokvel", [bob.local.username, carol.local.username]);
    const update = await carolsUpdate;
    const expected = {
      [alice.local.uuid]: { username: alice.local.username, verified: true },
      [bob.local.uuid]: { username: bob.local.username, verified: true },
      [carol.local.uuid]: { username: carol.local.username, verified: true },
    };
    assert.deepEqual(update.names, expected);
    assert.deepEqual((await bobsUpdate).names, expected);
    assert.deepEqual(
      carol.groupMembers(group.id),
      [alice, bob, carol].map((c) => ({
        uuid: c.local.uuid,
        name: { username: c.local.username, verified: true },
        admin: c === alice,
      })),
    );

    // Bob's group message shows his name at Carol's, from the cache.
    const before = carolLookups.count;
    await bob.sendGroupText(group.id, "I'll collect this month");
    const [message] = await until<MessageEvent>(toCarol, 1);
    assert.equal(message?.group, group.id);
    assert.deepEqual(message?.senderName, { username: bob.local.username, verified: true });
    assert.equal(carolLookups.count, before, "no look-up: the name was verified with the group change");
    for (const c of [alice, bob, carol]) await c.close();
  });

  it("a group change naming a member with someone else's username does not name them so", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const carol = await registerDevice(server.url, undefined, { sendReceipts: false });
    await carol.connect();
    const updated = next<GroupUpdatedEvent>(carol, "groupUpdated");
    const group = {
      id: "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
      title: "Lies",
      members: [alice.local.uuid, bob.local.uuid, carol.local.uuid],
      admins: [alice.local.uuid],
      revision: 0,
    };
    // Alice's client claims Bob is "carol's username" (which belongs to Carol).
    await sendContent(alice, carol.local.uuid, {
      v: 1,
      timestamp: Date.now(),
      groupUpdate: group,
      profile: { username: alice.local.username },
      memberNames: [{ uuid: bob.local.uuid, username: carol.local.username }],
    });
    const update = await updated;
    assert.equal(update.names?.[bob.local.uuid], undefined, "Bob is not named by the false claim");
    assert.equal(carol.nameOf(bob.local.uuid), null);
    assert.deepEqual(update.names?.[alice.local.uuid], { username: alice.local.username, verified: true });
    for (const c of [alice, bob, carol]) await c.close();
  });
});
