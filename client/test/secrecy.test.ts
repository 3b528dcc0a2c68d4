import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { HttpApi, SqliteDeviceStore, type ZimClient } from "../src/index.js";
import { attackerDecrypt } from "./support/attacker.js";
import { deviceDir, type Homeserver, inbox, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";

/** Bob's queued envelopes as the wire carries them (a passive observer's capture). */
async function capture(server: Homeserver, bob: ZimClient) {
  const api = new HttpApi(server.url, { uuid: bob.local.uuid, deviceId: 1, password: bob.local.password });
  return (await api.fetchMessages()).envelopes;
}

async function steal(bob: ZimClient, name: string): Promise<SqliteDeviceStore> {
  const path = join(deviceDir, `${name}.db`);
  await (bob.store as SqliteDeviceStore).backup(path);
  return new SqliteDeviceStore(path);
}

describe("forward secrecy and post-compromise security", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("a store stolen at T cannot decrypt messages delivered and deleted before T", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const toBob = inbox(bob);
    for (let i = 0; i < 5; i++) await alice.sendText(bob.local.username, `before T ${i}`);
    const captured = await capture(server, bob);
    assert.equal(captured.length, 5);
    assert.equal(await bob.poll(), 5);
    assert.equal(toBob.length, 5);
    assert.equal((await capture(server, bob)).length, 0, "deleted from the server after the ack");

    const stolen = await steal(bob, "bob-stolen-fs");
    for (const envelope of captured)
      assert.equal(await attackerDecrypt(stolen, envelope), null, "a past message decrypted with the stolen store");
    stolen.close();
    await alice.close();
    await bob.close();
  });

  it("a store stolen at T reads the current chain, but nothing after a DH ratchet step", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const toAlice = inbox(alice);
    await alice.connect();
    await alice.sendText(bob.local.username, "a0");
    await bob.poll();
    await bob.sendText(alice.local.username, "b0");
    await until(toAlice, 1);

    const stolen = await steal(bob, "bob-stolen-pcs");
    await alice.sendText(bob.local.username, "a1");
    const [a1] = await capture(server, bob);
    assert.equal(await attackerDecrypt(stolen, a1!), "a1", "the stolen store reads the current receiving chain");

    // Bob replies and Alice answers: a DH ratchet step the attacker did not see the keys of.
    await bob.poll();
    await bob.sendText(alice.local.username, "b1");
    await until(toAlice, 2);
    await alice.sendText(bob.local.username, "a2");
    const [a2] = await capture(server, bob);
    assert.notEqual(a2!.type, "prekey", "an ongoing session, not a new one");
    assert.equal(
      await attackerDecrypt(stolen, a2!),
      null,
      "the stolen store decrypted a message after the ratchet step",
    );
    const toBob = inbox(bob);
    await bob.poll();
    assert.deepEqual(
      toBob.map((m) => m.text),
      ["a2"],
      "Bob himself still reads it",
    );
    stolen.close();
    await alice.close();
    await bob.close();
  });
});
