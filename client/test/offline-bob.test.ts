import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiError, SqliteDeviceStore, ZimClient, type MessageEvent } from "../src/index.js";
import { next, startHomeserver, type Homeserver } from "@zimchat/testing/spawn";

describe("the offline-Bob story", () => {
  let server: Homeserver;
  const dir = mkdtempSync(join(tmpdir(), "zimchat-devices-"));
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("Alice writes while Bob is offline; Bob connects, decrypts, replies; both see the same safety number", async () => {
    const alice = await ZimClient.register({
      serverUrl: server.url,
      username: "alice",
      store: new SqliteDeviceStore(join(dir, "alice.db")),
    });
    const bob = await ZimClient.register({
      serverUrl: server.url,
      username: "bob",
      store: new SqliteDeviceStore(join(dir, "bob.db")),
    });
    assert.equal(statSync(join(dir, "alice.db")).mode & 0o777, 0o600, "the store file is owner-only");
    bob.disconnect();
    await alice.connect();

    const text = "Hey, did you see the news about the bond notes?";
    const sent = await alice.sendText("bob", text);
    assert.equal(sent.envelopes.length, 1);

    // Bob comes online later, from his store on disk.
    await bob.close();
    const bobAgain = new ZimClient({ store: new SqliteDeviceStore(join(dir, "bob.db")) });
    const received: MessageEvent[] = [];
    bobAgain.on("message", (m) => received.push(m));
    const receipt = next<{ timestamps: number[] }>(alice, "deliveryReceipt");
    await bobAgain.connect();
    assert.equal(received.length, 1);
    assert.equal(received[0]!.text, text);
    assert.equal(received[0]!.from, alice.local.uuid);
    assert.deepEqual((await receipt).timestamps, [sent.timestamp], "Alice gets an encrypted delivery receipt");

    const reply = next<MessageEvent>(alice, "message");
    await bobAgain.sendText("alice", "Yes! Prices went up again.");
    assert.equal((await reply).text, "Yes! Prices went up again.");

    const a = await alice.safetyNumber("bob");
    const b = await bobAgain.safetyNumber("alice");
    assert.equal(a.digits, b.digits);
    assert.match(a.grouped, /^(\d{5} ){11}\d{5}$/);
    assert.deepEqual(
      (await bobAgain.conversation("alice")).map((m) => [m.direction, m.text]),
      [
        ["in", text],
        ["out", "Yes! Prices went up again."],
      ],
    );
    await alice.close();
    await bobAgain.close();
  });

  it("a refused registration leaves the device store empty", async () => {
    const store = new SqliteDeviceStore(join(dir, "refused.db"));
    await assert.rejects(
      ZimClient.register({ serverUrl: server.url, username: "alice", store }),
      (error: unknown) => error instanceof ApiError && error.code === "username_taken",
    );
    assert.equal(store.getLocal(), null);
    assert.deepEqual(store.listPreKeys("signed"), []);
    store.close();
  });
});
