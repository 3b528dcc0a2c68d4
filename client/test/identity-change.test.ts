import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { UntrustedIdentityError } from "../src/index.js";
import { type Homeserver, inbox, next, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";

describe("identity changes", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("a verified contact's new key blocks sending until re-verified", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const toAlice = inbox(alice);
    await alice.connect();
    await bob.connect();
    await alice.sendText(bob.local.username, "hello");
    const bobNumber = await bob.safetyNumber(alice.local.username);
    assert.equal(await alice.verify(bob.local.username, "1".repeat(60)), false, "a wrong number does not verify");
    assert.equal(await alice.verify(bob.local.username, bobNumber.grouped), true);
    assert.deepEqual(await alice.trustState(bob.local.username), { verified: true, blocked: false });

    // Bob reinstalls: a new identity key on the same account.
    const changed = next<{ uuid: string; blocked: boolean }>(alice, "identityChanged");
    await bob.resetIdentity();
    await bob.sendText(alice.local.username, "I reinstalled");
    assert.deepEqual(await changed, { uuid: bob.local.uuid, blocked: true });
    await until(toAlice, 1);
    assert.equal(toAlice[0]!.text, "I reinstalled", "receiving from the new key still works");

    await assert.rejects(alice.sendText(bob.local.username, "are you really Bob?"), UntrustedIdentityError);
    assert.equal(
      (await alice.safetyNumber(bob.local.username)).digits === bobNumber.digits,
      false,
      "the safety number changed",
    );
    // Re-verify with the new number, scanned this time.
    const scanned = (await bob.safetyNumber(alice.local.username)).scannable;
    assert.equal(await alice.verify(bob.local.username, scanned), true);
    await alice.sendText(bob.local.username, "welcome back");
    await alice.close();
    await bob.close();
  });

  it("an unverified contact's new key is trusted (TOFU) with a warning; accept lifts a block", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    await alice.connect();
    await alice.sendText(bob.local.username, "hi");
    await bob.resetIdentity();
    const changed = next<{ uuid: string; blocked: boolean }>(alice, "identityChanged");
    await alice.sendText(bob.local.username, "still there?");
    assert.deepEqual(await changed, { uuid: bob.local.uuid, blocked: false });

    // Verified, changed again, then accepted without verifying.
    const number = await bob.safetyNumber(alice.local.username);
    assert.ok(await alice.verify(bob.local.username, number.digits));
    await bob.resetIdentity();
    await assert.rejects(alice.sendText(bob.local.username, "x"), UntrustedIdentityError);
    await alice.acceptIdentityChange(bob.local.username);
    await alice.sendText(bob.local.username, "accepted");
    assert.deepEqual(await alice.trustState(bob.local.username), { verified: false, blocked: false });
    await alice.close();
    await bob.close();
  });
});
