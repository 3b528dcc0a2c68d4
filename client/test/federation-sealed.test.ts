/**
 * Sealed sender across servers, end to end: two real `zimchat serve`
 * processes federating on loopback, real clients on SQLite stores. A sender
 * certificate is checked only against the trust root of the server its
 * sender is bound to (pinned per server on first use), so a server that
 * mints certificates for another server's users is refused.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PrivateKey } from "@signalapp/libsignal-client";
import { SealedSendingPausedError, trustRootFingerprint, type ZimClient } from "../src/index.js";
import { inbox, registerDevice, until } from "@zimchat/testing/spawn";
import {
  collect,
  federatedHomeserver,
  mintSealedMessage,
  trustRootOf,
  type FederatedHomeserver,
} from "./support/federation.js";
import { queryServerDb } from "./support/server-db.js";

describe("federation: sealed sender across servers", () => {
  let club: FederatedHomeserver;
  let news: FederatedHomeserver;
  const closing: ZimClient[] = [];
  before(async () => {
    [club, news] = await Promise.all([federatedHomeserver(), federatedHomeserver()]);
  });
  after(async () => {
    for (const client of closing) await client.close().catch(() => undefined);
    await Promise.all([club?.stop(), news?.stop()]);
  });

  it("alice@club and bob@news write sealed both ways, shown with the right sender; each pins the other's trust root", async () => {
    const alice = await registerDevice(club.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(news.url, undefined, { sendReceipts: false });
    closing.push(alice, bob);
    const bobAddress = `${bob.local.username}@${news.name}`;
    const aliceAddress = `${alice.local.username}@${club.name}`;
    const toAlice = inbox(alice);
    const toBob = inbox(bob);
    await alice.connect();
    await bob.connect();
    // The first message carries alice's access key (she does not know Bob's yet: authenticated).
    await alice.sendText(bobAddress, "hello from club");
    const [first] = await until(toBob, 1);
    assert.equal(first?.sealed, false);

    // Bob knows her access key now: his reply is sealed, relayed by news, checked against news's root.
    await bob.sendText(aliceAddress, "sealed from news");
    const [reply] = await until(toAlice, 1);
    assert.equal(reply?.text, "sealed from news");
    assert.equal(reply?.sealed, true);
    assert.equal(reply?.from, bob.local.uuid);
    assert.equal(reply?.fromServer, news.name);
    assert.deepEqual(reply?.senderName, { username: bobAddress, verified: true });
    assert.equal(alice.store.getValue(`trustRoot:${news.name}`), trustRootOf(news), "news's root pinned on first use");
    assert.equal(alice.store.getValue("trustRoot"), trustRootOf(club));

    // And back, sealed: news stores it without a sender.
    bob.disconnect();
    await alice.sendText(bobAddress, "sealed from club");
    const stored = await queryServerDb<{ sourceAccountId: string | null; sourceServer: string | null }>(
      news,
      `SELECT "sourceAccountId", "sourceServer" FROM "Envelope" WHERE "accountId" = $1`,
      [bob.local.uuid],
    );
    assert.deepEqual(stored, [{ sourceAccountId: null, sourceServer: club.name }]);
    await bob.connect();
    const [, back] = await until(toBob, 2);
    assert.equal(back?.text, "sealed from club");
    assert.equal(back?.sealed, true);
    assert.equal(back?.from, alice.local.uuid);
    assert.equal(back?.fromServer, club.name);
    assert.deepEqual(back?.senderName, { username: aliceAddress, verified: true });
    assert.equal(bob.store.getValue(`trustRoot:${club.name}`), trustRootOf(club));
  });

  it("news's trust root differs from the pinned one: reported once, sealed sends to its users held until the app accepts it", async () => {
    const alice = await registerDevice(club.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(news.url, undefined, { sendReceipts: false });
    closing.push(alice, bob);
    const bobAddress = `${bob.local.username}@${news.name}`;
    const aliceAddress = `${alice.local.username}@${club.name}`;
    const toAlice = inbox(alice);
    const failures = collect(alice, "decryptionFailed");
    const changes = collect(alice, "trustRootChanged");
    await alice.sendText(bobAddress, "my access key");
    await bob.poll();
    await bob.sendText(aliceAddress, "yours");
    await alice.poll();
    assert.equal(toAlice.at(-1)?.sealed, true);
    // What alice sees after news replaced its trust root: the one she pinned is not the one news presents.
    const other = PrivateKey.generate().getPublicKey().serialize();
    const pinned = trustRootFingerprint(other);
    const presented = trustRootFingerprint(Buffer.from(trustRootOf(news), "base64"));
    alice.store.setValue(`trustRoot:${news.name}`, Buffer.from(other).toString("base64"));

    // Bob's next sealed message does not validate against the pinned root: refused, never shown; the root is asked
    // again and the change reported.
    await bob.sendText(aliceAddress, "after the change");
    await alice.poll();
    await until(failures, 1);
    assert.equal(failures[0]?.reason, "invalid_certificate");
    assert.equal(toAlice.length, 1);
    await until(changes, 1);
    assert.deepEqual(changes, [{ pinned, presented, unsealedAllowed: false, server: news.name }]);
    // Sealed sends to news's users are held (not silently sent authenticated), reported once.
    await assert.rejects(alice.sendText(bobAddress, "held"), (error: unknown) => {
      assert.ok(error instanceof SealedSendingPausedError);
      assert.equal(error.server, news.name);
      return true;
    });
    await assert.rejects(alice.sendText(bobAddress, "held again"), SealedSendingPausedError);
    assert.equal(changes.length, 1);

    // The app checked the fingerprint with news's admin: sealed both ways again.
    assert.equal(await alice.acceptTrustRoot(presented, news.name), presented);
    assert.equal(alice.store.getValue(`trustRoot:${news.name}`), trustRootOf(news));
    await alice.sendText(bobAddress, "sealed again");
    const toBob = inbox(bob);
    await bob.poll();
    assert.equal(toBob.at(-1)?.text, "sealed again");
    assert.equal(toBob.at(-1)?.sealed, true);
    await bob.sendText(aliceAddress, "and back");
    await alice.poll();
    assert.equal(toAlice.at(-1)?.text, "and back");
    assert.equal(toAlice.at(-1)?.sealed, true);
  });

  it("news down: a sealed send (never queued: 502) falls back to an authenticated send that club queues", async () => {
    const alice = await registerDevice(club.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(news.url, undefined, { sendReceipts: false });
    closing.push(alice, bob);
    const bobAddress = `${bob.local.username}@${news.name}`;
    const toBob = inbox(bob);
    await bob.sendText(`${alice.local.username}@${club.name}`, "my access key");
    await alice.poll();
    assert.ok(alice.store.getValue(`accessKey:${bob.local.uuid}`), "alice knows Bob's access key");
    let queued: Awaited<ReturnType<ZimClient["sendText"]>> | undefined;
    await news.restart(async () => {
      queued = await alice.sendText(bobAddress, "while news was down");
    });
    assert.equal(queued?.queued, true, "sent authenticated, queued by club");
    await bob.connect();
    // News asking club something tells club that news is up again: its outbox retries now.
    await bob.api.remoteLookupUsername(club.name, alice.local.username);
    const [message] = await until(toBob, 1, 60_000);
    assert.equal(message?.text, "while news was down");
    assert.equal(message?.sealed, false);
    assert.equal(message?.from, alice.local.uuid);
  });

  it("a certificate club mints for bob (bound to news) is refused, relayed by club or delivered on club", async () => {
    const alice = await registerDevice(club.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(news.url, undefined, { sendReceipts: false });
    const carol = await registerDevice(news.url, undefined, { sendReceipts: false });
    closing.push(alice, bob, carol);
    // Alice knows Bob as news's user; Carol knows him as a user of her own server.
    assert.equal(await alice.resolve(`${bob.local.username}@${news.name}`), bob.local.uuid);
    assert.equal(await carol.resolve(bob.local.username), bob.local.uuid);
    // Carol learns club's trust root through a genuine sealed message from alice (so the forgery validates against it).
    await alice.sendText(`${carol.local.username}@${news.name}`, "hello carol");
    await carol.sendText(`${alice.local.username}@${club.name}`, "hello alice");
    await alice.poll();
    await alice.sendText(`${carol.local.username}@${news.name}`, "sealed to carol");
    const toCarol = inbox(carol);
    await carol.poll();
    assert.equal(toCarol.at(-1)?.text, "sealed to carol");
    assert.equal(toCarol.at(-1)?.sealed, true);
    assert.equal(carol.store.getValue(`trustRoot:${club.name}`), trustRootOf(club));
    toCarol.length = 0;

    // Club's operator signs, with club's own trust root, a certificate claiming Bob's account id: delivered to alice on
    // club (checked against club's root, which it passes) ...
    const toAlice = inbox(alice);
    const aliceFailures = collect(alice, "decryptionFailed");
    const local = await mintSealedMessage(
      club,
      bob.local.uuid,
      alice.local.uuid,
      await alice.api.preKeyBundle(alice.local.uuid, 1),
      "I am bob, honest",
    );
    await alice.api.sendSealed(alice.local.uuid, { messages: [local] }, alice.local.accessKey);
    // ... and relayed by club to carol on news.
    const carolFailures = collect(carol, "decryptionFailed");
    const relayed = await mintSealedMessage(
      club,
      bob.local.uuid,
      carol.local.uuid,
      await alice.api.remotePreKeyBundle(news.name, carol.local.uuid, 1),
      "I am bob, honest",
    );
    await alice.api.remoteSendSealed(news.name, carol.local.uuid, { messages: [relayed] }, carol.local.accessKey);
    await alice.poll();
    await carol.poll();
    await until(aliceFailures, 1);
    await until(carolFailures, 1);
    assert.deepEqual(toAlice, [], "nothing shown as from bob");
    assert.deepEqual(toCarol, [], "nothing shown as from bob");
    assert.equal(aliceFailures[0]?.reason, "server_mismatch");
    assert.equal(aliceFailures[0]?.from, bob.local.uuid);
    assert.equal(carolFailures[0]?.reason, "server_mismatch");
    assert.equal(alice.serverOf(bob.local.uuid), news.name, "the bindings did not move");
    assert.equal(carol.serverOf(bob.local.uuid), null);
  });
});
