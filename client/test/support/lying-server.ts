/**
 * The lying-server cases (issue 12), run by lying-server*.test.ts: a real homeserver child process
 * whose operator edits its database and key files (as someone running it, or
 * holding its disk, could), with the key-transparency plugin on and off. Each
 * case checks what the client catches and what it tells the app.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PrivateKey, PublicKey, ServerCertificate } from "@signalapp/libsignal-client";
import {
  BadDeviceKeysError,
  SealedSendingPausedError,
  UntrustedIdentityError,
  safetyNumber,
  trustRootFingerprint,
  type ZimClient,
  type ZimClientEvents,
} from "../../src/index.js";
import {
  freePort,
  type Homeserver,
  inbox,
  registerDevice as register,
  startHomeserver,
  until,
} from "@zimchat/testing/spawn";
import { forgedSealedPreKeyMessage } from "./forged-sealed.js";
import { linkDevice } from "./linking.js";
import { queryServerDb, writeServerDb } from "./server-db.js";

export const pluginPath = fileURLToPath(
  new URL("../../../../plugins/dist/src/key-transparency/index.js", import.meta.url),
);
export const bytes = (s: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;
export const publicKeyOf = (client: ZimClient): PublicKey =>
  PrivateKey.deserialize(client.local.identityPrivateKey).getPublicKey();
export const settle = (ms = 400): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Collects one event's payloads. */
export function events<K extends keyof ZimClientEvents>(client: ZimClient, name: K): ZimClientEvents[K][0][] {
  const list: ZimClientEvents[K][0][] = [];
  (client.on as (event: K, listener: (value: ZimClientEvents[K][0]) => void) => void)(name, (value) =>
    list.push(value),
  );
  return list;
}

/**
 * The operator swaps an account's identity key for one it holds and re-signs
 * the account's pre-keys with it (so the bundle verifies), and bumps the
 * registration id of `staleDevices` so that senders' sessions with them are
 * stale (410) and new bundles are fetched.
 */
export async function forgeIdentity(server: Homeserver, uuid: string, staleDevices: number[]): Promise<PrivateKey> {
  const mallory = PrivateKey.generate();
  await writeServerDb(server, `UPDATE "Account" SET "identityKey" = $1 WHERE "id" = $2`, [
    Buffer.from(mallory.getPublicKey().serialize()),
    uuid,
  ]);
  for (const table of ["SignedPreKey", "KyberLastResortKey", "KyberPreKey"]) {
    const rows = await queryServerDb<{ deviceId: number; keyId: number; publicKey: Uint8Array }>(
      server,
      `SELECT "deviceId", "keyId", "publicKey" FROM "${table}" WHERE "accountId" = $1`,
      [uuid],
    );
    for (const row of rows) {
      const signature = mallory.sign(new Uint8Array(row.publicKey) as Uint8Array<ArrayBuffer>);
      await writeServerDb(
        server,
        `UPDATE "${table}" SET "signature" = $1 WHERE "accountId" = $2 AND "deviceId" = $3 AND "keyId" = $4`,
        [Buffer.from(signature), uuid, row.deviceId, row.keyId],
      );
    }
  }
  for (const id of staleDevices)
    await writeServerDb(
      server,
      `UPDATE "Device" SET "registrationId" = "registrationId" % 16000 + 1 WHERE "accountId" = $1 AND "id" = $2`,
      [uuid, id],
    );
  return mallory;
}

/** Flips one byte of every stored signature of an account's keys in `table`. */
export async function corruptSignatures(server: Homeserver, table: string, uuid: string): Promise<void> {
  const rows = await queryServerDb<{ deviceId: number; keyId: number; signature: Uint8Array }>(
    server,
    `SELECT "deviceId", "keyId", "signature" FROM "${table}" WHERE "accountId" = $1`,
    [uuid],
  );
  for (const row of rows) {
    const bad = Buffer.from(row.signature);
    bad[10] = bad[10]! ^ 0xff;
    await writeServerDb(
      server,
      `UPDATE "${table}" SET "signature" = $1 WHERE "accountId" = $2 AND "deviceId" = $3 AND "keyId" = $4`,
      [bad, uuid, row.deviceId, row.keyId],
    );
  }
}

/**
 * What the operator can mint with the server's own certificate key: a
 * sender certificate naming `victim` (device 1) with a key pair it made up,
 * around a new-session (PreKey) message from that key to `target`, sent as
 * a sealed envelope.
 */
export async function mintSealedPreKeyMessage(
  server: Homeserver,
  victim: ZimClient,
  target: ZimClient,
  text: string,
): Promise<void> {
  const keys = join(server.dataDir, "keys");
  const serverKey = PrivateKey.deserialize(bytes(readFileSync(join(keys, "server.key"), "utf8").trim()));
  const serverCertificate = ServerCertificate.deserialize(bytes(readFileSync(join(keys, "server.crt"), "utf8").trim()));
  const message = await forgedSealedPreKeyMessage({
    claimedUuid: victim.local.uuid,
    targetUuid: target.local.uuid,
    bundle: await victim.api.preKeyBundle(target.local.uuid, 1),
    text,
    serverCertificate,
    serverKey,
  });
  await victim.api.sendSealed(target.local.uuid, { messages: [message] }, target.local.accessKey);
}

/** The lying-server cases on one homeserver, with or without the key-transparency plugin. */
export function lyingServerCases(keyTransparency: boolean): void {
  /** Every device made here: disconnected at the end, so that a failed case cannot keep the test process alive. */
  const devices: ZimClient[] = [];
  const registerDevice = async (url: string): Promise<ZimClient> => {
    const client = await register(url);
    devices.push(client);
    return client;
  };
  describe(`a lying server, key-transparency plugin ${keyTransparency ? "on" : "off"}`, () => {
    let server: Homeserver;
    let configDir: string;
    before(async () => {
      configDir = mkdtempSync(join(tmpdir(), "zimchat-lying-config-"));
      const config = join(configDir, "zimchat.config.json");
      writeFileSync(
        config,
        JSON.stringify({
          plugins: keyTransparency ? [{ use: pluginPath, config: { treeHeadMaxAgeSeconds: 600 } }] : [],
        }),
      );
      // One-minute sender certificates: the SDK renews them before every sealed send (it renews an hour ahead).
      server = await startHomeserver([
        "--config",
        config,
        "--port",
        String(await freePort()),
        "--sender-certificate-ttl",
        "1m",
      ]);
    });
    after(async () => {
      for (const client of devices) client.disconnect();
      await server.stop();
      rmSync(configDir, { recursive: true, force: true });
    });

    it("a verified contact's new key is recorded when a send is refused: the new number is shown and verifying it unblocks", async () => {
      const alice = await registerDevice(server.url);
      const bob = await registerDevice(server.url);
      await alice.connect();
      await alice.sendText(bob.local.username, "hello");
      const oldNumber = await alice.safetyNumber(bob.local.username);
      assert.ok(await alice.verify(bob.local.username, oldNumber.digits));
      const mallory = await forgeIdentity(server, bob.local.uuid, [1]);
      const changed = events(alice, "identityChanged");

      await assert.rejects(alice.sendText(bob.local.username, "are you still bob?"), UntrustedIdentityError);
      const newNumber = safetyNumber(alice.local.uuid, publicKeyOf(alice), bob.local.uuid, mallory.getPublicKey());
      assert.equal(
        (await alice.safetyNumber(bob.local.username)).digits,
        newNumber.digits,
        "the number shown is the new key's",
      );
      assert.deepEqual(
        await alice.trustState(bob.local.username),
        { verified: false, blocked: true },
        "recorded as changed and blocked",
      );
      await until(changed, 1);
      assert.deepEqual(changed, [{ uuid: bob.local.uuid, blocked: true }]);
      await assert.rejects(alice.sendText(bob.local.username, "again?"), UntrustedIdentityError, "still blocked");
      assert.equal(await alice.verify(bob.local.username, oldNumber.digits), false, "the old number no longer matches");
      assert.equal(await alice.verify(bob.local.username, newNumber.grouped), true, "the new number verifies");
      assert.deepEqual(await alice.trustState(bob.local.username), { verified: true, blocked: false });
      await alice.sendText(bob.local.username, "verified the new number");
      await settle(100);
      assert.equal(changed.length, 1, JSON.stringify(changed));
      await alice.close();
      await bob.close();
    });

    it("a certificate the server minted for a known sender around a new-session message is refused, not shown as sealed", async () => {
      const alice = await registerDevice(server.url);
      const bob = await registerDevice(server.url);
      const toAlice = inbox(alice);
      const toBob = inbox(bob);
      const failed = events(alice, "decryptionFailed");
      const changed = events(alice, "identityChanged");
      await alice.connect();
      await bob.connect();
      await alice.sendText(bob.local.username, "hi bob");
      await until(toBob, 1);
      await bob.sendText(alice.local.username, "hi alice");
      await until(toAlice, 1);
      const before = await alice.safetyNumber(bob.local.username);

      await mintSealedPreKeyMessage(server, bob, alice, "send the bond notes to my new account");
      await until(failed, 1);
      assert.equal(failed[0]!.reason, "certificate_key_mismatch");
      assert.equal(failed[0]!.from, bob.local.uuid);
      await settle();
      assert.deepEqual(
        toAlice.map((m) => m.text),
        ["hi alice"],
        "the minted message is not shown",
      );
      assert.deepEqual(changed, [], "the made-up key is not recorded");
      assert.equal((await alice.safetyNumber(bob.local.username)).digits, before.digits);
      // The real bob still gets through, sealed.
      await bob.sendText(alice.local.username, "still me");
      await until(toAlice, 2);
      assert.deepEqual([toAlice[1]!.text, toAlice[1]!.sealed], ["still me", true]);
      await alice.close();
      await bob.close();
    });

    it("a device whose keys its identity key did not sign: a typed error and an event naming the account and device", async () => {
      const alice = await registerDevice(server.url);
      const bob = await registerDevice(server.url);
      const bad = events(alice, "badDeviceKeys");
      await corruptSignatures(server, "SignedPreKey", bob.local.uuid);
      await assert.rejects(alice.sendText(bob.local.username, "hi"), (error: unknown) => {
        assert.ok(error instanceof BadDeviceKeysError, String(error));
        assert.deepEqual([error.uuid, error.deviceId, error.key], [bob.local.uuid, 1, "signed_pre_key"]);
        return true;
      });
      assert.deepEqual(bad, [{ uuid: bob.local.uuid, deviceId: 1, key: "signed_pre_key" }]);
      // The signed key is restored, the Kyber keys are broken instead.
      await corruptSignatures(server, "SignedPreKey", bob.local.uuid);
      await corruptSignatures(server, "KyberPreKey", bob.local.uuid);
      await corruptSignatures(server, "KyberLastResortKey", bob.local.uuid);
      await assert.rejects(alice.sendText(bob.local.username, "hi"), BadDeviceKeysError);
      assert.deepEqual(bad.at(-1), { uuid: bob.local.uuid, deviceId: 1, key: "kyber_pre_key" });
      assert.deepEqual(await alice.conversation(bob.local.username), [], "nothing recorded as sent");
      await alice.close();
      await bob.close();
    });

    it("a changed trust root pauses sealed sends until the app decides (no silent downgrade)", async () => {
      const alice = await registerDevice(server.url);
      const bob = await registerDevice(server.url);
      const toAlice = inbox(alice);
      const toBob = inbox(bob);
      const rootChanges = events(alice, "trustRootChanged");
      const receiptsToBob = events(bob, "deliveryReceipt");
      await alice.connect();
      await bob.connect();
      await bob.sendText(alice.local.username, "here is my access key");
      await until(toAlice, 1);
      await alice.sendText(bob.local.username, "sealed");
      await until(toBob, 1);
      assert.equal(toBob[0]!.sealed, true);
      // Alice's receipt for Bob's first message goes out in the background: Bob's queue is counted below, so it must
      // have landed before the restart (a receipt retried across the restart would count as a send).
      await until(receiptsToBob, 1);
      const pinned = trustRootFingerprint(bytes(alice.store.getValue("trustRoot")!));

      // The operator replaces the server's keys (a new trust root) and restarts it.
      await server.restart(() => rmSync(join(server.dataDir, "keys"), { recursive: true, force: true }));
      const presented = trustRootFingerprint(
        bytes(readFileSync(join(server.dataDir, "keys", "trust-root.pub"), "utf8").trim()),
      );
      assert.notEqual(presented, pinned);
      bob.disconnect();
      const queuedBefore = await queryServerDb<{ n: number }>(
        server,
        `SELECT COUNT(*) AS "n" FROM "Envelope" WHERE "accountId" = $1`,
        [bob.local.uuid],
      );
      await assert.rejects(alice.sendText(bob.local.username, "paused"), SealedSendingPausedError);
      await assert.rejects(alice.sendText(bob.local.username, "paused again"), SealedSendingPausedError);
      assert.deepEqual(rootChanges, [{ pinned, presented, unsealedAllowed: false }], "reported once");
      const queuedAfter = await queryServerDb<{ n: number }>(
        server,
        `SELECT COUNT(*) AS "n" FROM "Envelope" WHERE "accountId" = $1`,
        [bob.local.uuid],
      );
      assert.equal(Number(queuedAfter[0]!.n), Number(queuedBefore[0]!.n), "nothing was sent, sealed or not");

      // The app lets authenticated sends through...
      await alice.allowUnsealedSending();
      await alice.sendText(bob.local.username, "unsealed, by choice");
      await bob.connect();
      await until(toBob, 2);
      assert.deepEqual([toBob[1]!.text, toBob[1]!.sealed], ["unsealed, by choice", false]);
      // ...and both accept the new root once its fingerprint is checked: sealed again.
      await assert.rejects(alice.acceptTrustRoot("0000"), /trust root/);
      assert.equal(await alice.acceptTrustRoot(presented), presented);
      assert.equal(await bob.acceptTrustRoot(presented), presented);
      await alice.sendText(bob.local.username, "sealed again");
      await until(toBob, 3);
      assert.deepEqual([toBob[2]!.text, toBob[2]!.sealed], ["sealed again", true]);
      await alice.close();
      await bob.close();
    });

    it("one identityChanged for one send to a contact whose devices show different keys", async () => {
      const alice = await registerDevice(server.url);
      const bob = await registerDevice(server.url);
      // Bob stays offline: no receipts from his devices' sessions while alice sends.
      const bob2 = await linkDevice(server.url, bob);
      devices.push(bob2);
      await alice.connect();
      await alice.sendText(bob.local.username, "to both devices");
      const changed = events(alice, "identityChanged");
      // Only device 2's session goes stale: its new bundle carries the new key, device 1's session the old one.
      await forgeIdentity(server, bob.local.uuid, [2]);
      await alice.sendText(bob.local.username, "after the change");
      await settle();
      assert.deepEqual(changed, [{ uuid: bob.local.uuid, blocked: false }]);
      await alice.sendText(bob.local.username, "and once more");
      await settle();
      assert.equal(changed.length, 1, JSON.stringify(changed));
      await alice.close();
      await bob2.close();
      await bob.close();
    });
  });
}
