import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { HttpApi, type ZimClient } from "../src/index.js";
import { type Homeserver, inbox, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";

describe("many messages both ways", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("interleaved, held back and delivered out of order: all decrypt, none twice", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const toAlice = inbox(alice);
    const toBob = inbox(bob);
    await alice.connect();

    // Bob offline: Alice's first 30 wait in his queue.
    for (let i = 0; i < 30; i++) await alice.sendText(bob.local.username, `a${i}`);
    // Bob takes his queue over REST and processes it shuffled (held back, late, out of order).
    const bobApi = new HttpApi(server.url, { uuid: bob.local.uuid, deviceId: 1, password: bob.local.password });
    const queued = (await bobApi.fetchMessages()).envelopes;
    assert.equal(queued.length, 30);
    const shuffled = queued
      .map((e) => ({ e, k: randomInt(1_000_000) }))
      .sort((x, y) => x.k - y.k)
      .map((x) => x.e);
    const heldBack = shuffled.splice(0, 10);
    await bob.processEnvelopes(shuffled);
    await bob.connect();

    // Interleaved both ways while the held-back ten are still unread.
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      sends.push(alice.sendText(bob.local.username, `a${30 + i}`));
      sends.push(bob.sendText(alice.local.username, `b${i}`));
    }
    await Promise.all(sends);
    await bob.processEnvelopes(heldBack.reverse());
    // A redelivery of already processed envelopes is recognised and not shown again.
    await bob.processEnvelopes(queued.slice(0, 5));

    await until(toBob, 70);
    await until(toAlice, 40);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(toBob.map((m) => m.text).sort(), Array.from({ length: 70 }, (_, i) => `a${i}`).sort());
    assert.deepEqual(toAlice.map((m) => m.text).sort(), Array.from({ length: 40 }, (_, i) => `b${i}`).sort());
    assert.equal(new Set(toBob.map((m) => m.envelopeId)).size, 70, "none shown twice");
    assert.equal((await bob.conversation(alice.local.username)).filter((m) => m.direction === "in").length, 70);
    await closeAll(alice, bob);
  });
});

async function closeAll(...clients: ZimClient[]): Promise<void> {
  for (const c of clients) await c.close();
}
