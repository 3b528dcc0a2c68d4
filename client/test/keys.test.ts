import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { HttpApi, type ZimClient } from "../src/index.js";
import { type Homeserver, inbox, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";

const day = 86_400_000;

describe("pre-key maintenance", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  const api = (c: ZimClient): HttpApi =>
    new HttpApi(server.url, { uuid: c.local.uuid, deviceId: 1, password: c.local.password });

  it("registers with 100 one-time keys of each kind and refills below the threshold", async () => {
    const bob = await registerDevice(server.url);
    const fetcher = await registerDevice(server.url);
    assert.deepEqual(await api(bob).keyCount(), { ecCount: 100, pqCount: 100 });
    for (let i = 0; i < 85; i++) await api(fetcher).preKeyBundle(bob.local.uuid, 1);
    assert.deepEqual(await api(bob).keyCount(), { ecCount: 15, pqCount: 15 });
    await bob.maintainKeys();
    assert.deepEqual(
      await api(bob).keyCount(),
      { ecCount: 100, pqCount: 100 },
      "a refill replaces the stored one-time keys with a fresh batch",
    );
    await bob.maintainKeys();
    assert.deepEqual(await api(bob).keyCount(), { ecCount: 100, pqCount: 100 }, "no refill above the threshold");
    await bob.close();
    await fetcher.close();
  });

  it("rotates the signed and last-resort keys weekly, and first messages built on the old ones still decrypt", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const toBob = inbox(bob);
    const before = await api(alice).preKeyBundle(bob.local.uuid, 1);

    // Alice starts her session from the bundle she fetched now...
    await alice.sendText(bob.local.username, "built on the old signed pre-key");
    // ...and Bob rotates (8 days later) before reading it.
    await bob.maintainKeys(Date.now() + 8 * day);
    const after = await api(alice).preKeyBundle(bob.local.uuid, 1);
    assert.notEqual(
      after.devices[0]!.signedPreKey.keyId,
      before.devices[0]!.signedPreKey.keyId,
      "the signed pre-key rotated",
    );
    await bob.poll();
    await until(toBob, 1);
    assert.equal(toBob[0]!.text, "built on the old signed pre-key");

    // After the grace period the old signed key is gone from the device.
    const oldId = before.devices[0]!.signedPreKey.keyId;
    assert.ok(bob.store.getPreKey("signed", oldId));
    await bob.maintainKeys(Date.now() + 40 * day);
    assert.equal(bob.store.getPreKey("signed", oldId), null);
    await alice.close();
    await bob.close();
  });
});
