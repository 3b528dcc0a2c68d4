import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MessageEvent } from "../src/index.js";
import { type Homeserver, inbox, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";
import { queryServerDb } from "./support/server-db.js";

interface EnvelopeRow {
  type: number;
  sourceAccountId: string | null;
  sourceDeviceId: number | null;
  accountId: string;
}

describe("sealed sender", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("after the first exchange, a 1,000-message conversation is stored with no sender and logged without pairing anyone", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const toAlice = inbox(alice);
    const toBob = inbox(bob);
    await alice.connect();
    await bob.connect();
    // First contact: Alice does not know Bob's access key yet, so this one is authenticated; it carries hers.
    await alice.sendText(bob.local.username, "hello");
    await until(toBob, 1);
    assert.equal(toBob[0]!.sealed, false);
    await bob.sendText(alice.local.username, "hello back");
    await until(toAlice, 1);
    assert.equal(toAlice[0]!.sealed, true, "Bob learned Alice's access key from her message");
    const logStart = server.logs.length;

    // 500 each way, each side offline while the other writes, so the envelopes sit in the database.
    // Half of each side's messages go over REST (logged per request), half over the sealed socket.
    bob.disconnect();
    alice.disconnect();
    for (let i = 0; i < 500; i++) {
      if (i === 250) await alice.connect();
      await alice.sendText(bob.local.username, `a${i}`);
    }
    const queuedForBob = await queryServerDb<EnvelopeRow>(
      server,
      `SELECT "type", "sourceAccountId", "sourceDeviceId", "accountId" FROM "Envelope" WHERE "accountId" = $1`,
      [bob.local.uuid],
    );
    assert.ok(queuedForBob.length >= 500, "Alice's 500 (and her receipt for Bob's reply) are queued");
    await bob.connect();
    await until(toBob, 501);

    alice.disconnect();
    bob.disconnect();
    for (let i = 0; i < 500; i++) {
      if (i === 250) await bob.connect();
      await bob.sendText(alice.local.username, `b${i}`);
    }
    const queuedForAlice = await queryServerDb<EnvelopeRow>(
      server,
      `SELECT "type", "sourceAccountId", "sourceDeviceId", "accountId" FROM "Envelope" WHERE "accountId" = $1`,
      [alice.local.uuid],
    );
    assert.ok(queuedForAlice.length >= 500, "Bob's 500 (and any receipts) are queued");
    await alice.connect();
    await until(toAlice, 501);

    for (const row of [...queuedForBob, ...queuedForAlice]) {
      assert.equal(row.type, 6, "sealed");
      assert.equal(row.sourceAccountId, null, "no sender stored");
      assert.equal(row.sourceDeviceId, null);
    }
    const check = (m: MessageEvent, from: string): void => {
      assert.equal(m.sealed, true);
      assert.equal(m.from, from, "the recipient learns the sender from the certificate");
    };
    toBob.slice(1).forEach((m) => check(m, alice.local.uuid));
    toAlice.slice(1).forEach((m) => check(m, bob.local.uuid));
    assert.deepEqual(
      toBob.slice(1).map((m) => m.text),
      Array.from({ length: 500 }, (_, i) => `a${i}`),
    );

    const lines = server.logs.slice(logStart);
    assert.ok(
      lines.filter((l) => l.includes("PUT /v1/messages/:uuid")).length >= 500,
      "the server logged each REST send at debug level",
    );
    const pairing = lines.filter(
      (l) =>
        l.includes(alice.local.uuid) ||
        l.includes(bob.local.uuid) ||
        l.includes(alice.local.username) ||
        l.includes(bob.local.username),
    );
    assert.deepEqual(pairing, [], "no log line names either party");
    await alice.close();
    await bob.close();
  });

  it("falls back to authenticated sending when a contact's access key stops working", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const toBob = inbox(bob);
    await bob.connect();
    // Alice holds a wrong key for Bob (as after Bob replaced his): the server answers 401, the SDK sends authenticated.
    alice.store.setValue(`accessKey:${bob.local.uuid}`, Buffer.alloc(16, 7).toString("base64"));
    await alice.sendText(bob.local.username, "still arrives");
    await until(toBob, 1);
    assert.deepEqual([toBob[0]!.text, toBob[0]!.sealed], ["still arrives", false]);
    await alice.close();
    await bob.close();
  });

  it("holds receipts for receiptDelayMs and sends them as one message per sender", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url, undefined, { receiptDelayMs: 500 });
    const receipts: { timestamps: number[] }[] = [];
    alice.on("deliveryReceipt", (r) => receipts.push(r));
    await alice.connect();
    const sent = [];
    for (const text of ["one", "two", "three"]) sent.push((await alice.sendText(bob.local.username, text)).timestamp);
    await bob.poll();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(receipts.length, 0, "nothing yet: the receipts are held");
    await until(receipts, 1);
    assert.deepEqual(receipts[0]!.timestamps, sent, "one receipt for the three messages");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(receipts.length, 1);
    await alice.close();
    await bob.close();
  });
});
