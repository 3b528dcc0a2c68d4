import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { DeviceListChangedEvent } from "../src/index.js";
import { type Homeserver, inbox, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";
import { linkDevice } from "./support/linking.js";

describe("multi-device", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("a linked device shares the account: Bob's messages reach both, Alice's sent messages appear on her other device, the safety number stays", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const changes: DeviceListChangedEvent[] = [];
    alice.on("deviceListChanged", (c) => changes.push(c));
    await alice.connect();
    await bob.connect();
    await alice.sendText(bob.local.username, "before linking");
    const safetyBefore = (await bob.safetyNumber(alice.local.username)).digits;

    const alice2 = await linkDevice(server.url, alice, `${alice.local.username}-2`);
    assert.equal(alice2.local.uuid, alice.local.uuid);
    assert.equal(alice2.local.deviceId, 2);
    assert.deepEqual(alice2.local.identityPrivateKey, alice.local.identityPrivateKey, "one identity key per account");
    await until(changes, 1);
    assert.deepEqual(changes[0]!.added, [2], "the primary is told a device was linked");

    const onAlice1 = inbox(alice);
    const onAlice2 = inbox(alice2);
    await alice2.connect();
    await bob.sendText(alice.local.username, "to both of you");
    await until(onAlice1, 1);
    await until(onAlice2, 1);
    assert.equal(onAlice1[0]!.text, "to both of you");
    assert.equal(onAlice2[0]!.text, "to both of you");
    assert.equal(onAlice2[0]!.from, bob.local.uuid);

    const onBob = inbox(bob);
    await alice.sendText(bob.local.username, "sent from device 1");
    await until(onBob, 1);
    await until(onAlice2, 2);
    const transcript = onAlice2[1]!;
    assert.equal(transcript.outgoing, true, "a sent transcript, shown as outgoing");
    assert.equal(transcript.text, "sent from device 1");
    assert.equal(transcript.conversation, bob.local.uuid);
    assert.deepEqual(
      (await alice2.conversation(bob.local.uuid)).map((m) => [m.direction, m.text]),
      [
        ["in", "to both of you"],
        ["out", "sent from device 1"],
      ],
    );

    // And the other way: device 2 writes, device 1 sees the transcript.
    await alice2.sendText(bob.local.username, "sent from device 2");
    await until(onBob, 2);
    await until(onAlice1, 2);
    assert.deepEqual(
      [onAlice1[1]!.outgoing, onAlice1[1]!.text, onAlice1[1]!.fromDevice],
      [true, "sent from device 2", 2],
    );

    assert.equal(
      (await bob.safetyNumber(alice.local.username)).digits,
      safetyBefore,
      "linking does not change the safety number",
    );
    assert.equal(
      (await alice2.safetyNumber(bob.local.username)).digits,
      (await alice.safetyNumber(bob.local.username)).digits,
    );

    // Unlinking: device 2 disappears from the list and from what Bob encrypts to.
    await alice.unlinkDevice(2);
    assert.deepEqual(
      (await alice.devices()).map((d) => d.id),
      [1],
    );
    await bob.sendText(alice.local.username, "only device 1 now");
    await until(onAlice1, 3);
    assert.equal(onAlice1[2]!.text, "only device 1 now");

    await alice2.close().catch(() => {});
    await alice.close();
    await bob.close();
  });

  it("a new device learns the groups its account is in", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    await alice.connect();
    const group = await alice.createGroup("committee", [bob.local.username]);
    const alice2 = await linkDevice(server.url, alice, `${alice.local.username}-g`);
    await alice2.connect();
    const deadline = Date.now() + 15_000;
    while (!alice2.group(group.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(alice2.group(group.id)?.members.sort(), [alice.local.uuid, bob.local.uuid].sort());
    await alice2.close();
    await alice.close();
    await bob.close();
  });
});
