/**
 * Federation end to end: two real `zimchat serve` processes on loopback,
 * each named after its own address and federating (open, loopback peers
 * allowed), and real clients on SQLite stores. Alice (club) writes to
 * `bob@news`; the terminal chat does the same across servers.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ZimClient } from "../src/index.js";
import { inbox, registerDevice, until } from "@zimchat/testing/spawn";
import { cli, ok, only } from "./support/chat-cli.js";
import { collect, eventually, federatedHomeserver, type FederatedHomeserver } from "./support/federation.js";
import { queryServerDb, writeServerDb } from "./support/server-db.js";

describe("federation: alice on club writes to bob on news", () => {
  let club: FederatedHomeserver;
  let news: FederatedHomeserver;
  const closing: ZimClient[] = [];
  const adminToken = randomBytes(24).toString("hex");
  before(async () => {
    [club, news] = await Promise.all([federatedHomeserver(), federatedHomeserver(["--admin-token", adminToken])]);
  });
  after(async () => {
    for (const client of closing) await client.close().catch(() => undefined);
    await Promise.all([club?.stop(), news?.stop()]);
  });

  it("bob offline first, then online; he replies; names are name@server; safety numbers are equal on both sides", async () => {
    const alice = await registerDevice(club.url);
    const bob = await registerDevice(news.url);
    closing.push(alice, bob);
    const toAlice = inbox(alice);
    const receipts = collect(alice, "deliveryReceipt");
    await alice.connect();
    assert.equal(await alice.homeServerName(), club.name);
    assert.equal(await bob.homeServerName(), news.name);

    // Bob is offline: his server stores the envelope.
    const bobAddress = `${bob.local.username}@${news.name}`;
    const sent = await alice.sendText(bobAddress, "Sawubona Bob, from the club server");
    assert.equal(sent.queued, undefined, "news answered");
    assert.equal(sent.envelopes.length, 1);
    assert.equal(alice.serverOf(bob.local.uuid), news.name);
    assert.equal(alice.store.getServerBinding(bob.local.uuid), news.name);
    assert.equal(alice.nameOf(bob.local.uuid)?.username, bobAddress);
    assert.equal(alice.addressOf(bob.local.uuid), bobAddress);

    const toBob = inbox(bob);
    await bob.connect();
    const [first] = await until(toBob, 1);
    assert.equal(first?.text, "Sawubona Bob, from the club server");
    assert.equal(first?.from, alice.local.uuid);
    assert.equal(first?.fromServer, club.name);
    assert.equal(first?.sealed, false, "alice did not know Bob's access key yet");
    const aliceAddress = `${alice.local.username}@${club.name}`;
    assert.deepEqual(first?.senderName, { username: aliceAddress, verified: true });
    assert.equal(bob.serverOf(alice.local.uuid), club.name);
    assert.equal(bob.store.getServerBinding(alice.local.uuid), club.name);

    // His delivery receipt crosses back, and his reply too.
    await until(receipts, 1);
    assert.equal(receipts[0]?.from, bob.local.uuid);
    await bob.sendText(aliceAddress, "Yebo! Greetings from news");
    const [reply] = await until(toAlice, 1);
    assert.equal(reply?.text, "Yebo! Greetings from news");
    assert.equal(reply?.fromServer, news.name);
    assert.deepEqual(reply?.senderName, { username: bobAddress, verified: true });
    // A second message in each direction rides the established sessions.
    await alice.sendText(bobAddress, "Two");
    await until(toBob, 2);
    assert.equal(toBob[1]?.text, "Two");

    const fromAlice = await alice.safetyNumber(bobAddress);
    const fromBob = await bob.safetyNumber(aliceAddress);
    assert.equal(fromAlice.digits, fromBob.digits);
    assert.equal(await alice.verify(bobAddress, fromBob.digits), true);
    assert.deepEqual(await alice.trustState(bobAddress), { verified: true, blocked: false });
    assert.deepEqual(
      (await alice.conversation(bobAddress)).map((m) => [m.direction, m.text]),
      [
        ["out", "Sawubona Bob, from the club server"],
        ["in", "Yebo! Greetings from news"],
        ["out", "Two"],
      ],
    );
  });

  it("news down: the send is queued on club; bob's keys change meanwhile; the client repairs and re-sends when club gives up", async () => {
    const alice = await registerDevice(club.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(news.url, undefined, { sendReceipts: false });
    closing.push(alice, bob);
    const bobAddress = `${bob.local.username}@${news.name}`;
    const aliceAddress = `${alice.local.username}@${club.name}`;
    const failures = collect(alice, "remoteDeliveryFailed");
    const changes = collect(alice, "identityChanged");
    await alice.connect();
    // Sessions first, while news is up.
    await alice.sendText(bobAddress, "before");
    const toBob = inbox(bob);
    await bob.connect();
    await until(toBob, 1);

    let queued: Awaited<ReturnType<ZimClient["sendText"]>> | undefined;
    await news.restart(async () => {
      queued = await alice.sendText(bobAddress, "while news was down");
    });
    assert.equal(queued?.queued, true, "club kept it in its outbox");
    assert.deepEqual(queued?.envelopes, []);
    assert.equal(alice.store.valuesWithPrefix("remoteSend:").length, 1, "its content is kept for a re-send");
    // Bob reinstalls (new identity key and registration id): club's queued envelope is now for a stale device.
    await bob.resetIdentity();
    // News asking club something tells club that news is up again: its outbox retries now, not after its backoff.
    assert.equal((await bob.api.remoteLookupUsername(club.name, alice.local.username)).uuid, alice.local.uuid);

    // News refuses the queued envelope (410 stale_devices), club gives up, and alice's client re-encrypts for Bob's new
    // key.
    const resent = (await until(toBob, 2, 60_000))[1];
    assert.equal(resent?.text, "while news was down");
    assert.equal(resent?.from, alice.local.uuid);
    assert.deepEqual(failures, [], "repaired without the app");
    assert.deepEqual(
      changes.map((c) => c.uuid),
      [bob.local.uuid],
    );
    // Nothing is kept once the re-send went through (Bob may see it before club's answer reaches alice).
    await eventually("the kept content is dropped", () => !alice.store.valuesWithPrefix("remoteSend:").length);
    let fromAlice = await alice.safetyNumber(bobAddress);
    let fromBob = await bob.safetyNumber(aliceAddress);
    assert.equal(fromAlice.digits, fromBob.digits);

    // With news up, a stale device is answered at once (410 through club) and repaired as for a local send.
    await bob.resetIdentity();
    const direct = await alice.sendText(bobAddress, "after another reinstall");
    assert.equal(direct.queued, undefined);
    assert.equal(direct.envelopes.length, 1);
    assert.equal((await until(toBob, 3))[2]?.text, "after another reinstall");
    assert.equal(changes.length, 2);
    fromAlice = await alice.safetyNumber(bobAddress);
    fromBob = await bob.safetyNumber(aliceAddress);
    assert.equal(fromAlice.digits, fromBob.digits);
  });

  it("a queued send that cannot be delivered (the account is gone) reaches the app as remoteDeliveryFailed", async () => {
    const alice = await registerDevice(club.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(news.url, undefined, { sendReceipts: false });
    const dave = await registerDevice(news.url, undefined, { sendReceipts: false });
    closing.push(alice, bob, dave);
    const daveAddress = `${dave.local.username}@${news.name}`;
    const failures = collect(alice, "remoteDeliveryFailed");
    await alice.connect();
    await alice.sendText(daveAddress, "before");

    let queued: Awaited<ReturnType<ZimClient["sendText"]>> | undefined;
    await news.restart(async () => {
      queued = await alice.sendText(daveAddress, "are you still there?");
    });
    assert.equal(queued?.queued, true);
    const deleted = await fetch(new URL(`/admin/v1/accounts/${dave.local.uuid}`, news.url), {
      method: "DELETE",
      headers: { authorization: `Bearer ${adminToken}` },
    });
    assert.equal(deleted.status, 204);
    // News is up again (see above): club retries now, news answers 404, club gives up.
    await bob.api.remoteLookupUsername(club.name, alice.local.username);
    const [failure] = await until(failures, 1, 60_000);
    assert.equal(failure?.to, dave.local.uuid);
    assert.equal(failure?.server, news.name);
    assert.equal(failure?.reason, "not_found");
    assert.equal(failure?.text, "are you still there?");
    assert.equal(failure?.timestamp, queued?.timestamp);
    assert.deepEqual(alice.store.valuesWithPrefix("remoteSend:"), [], "given up: nothing kept");
  });

  it("a homeserver that relabels envelopes (a remote user as its own, its own user as remote) is refused", async () => {
    const alice = await registerDevice(club.url, undefined, { sendReceipts: false });
    const carol = await registerDevice(club.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(news.url, undefined, { sendReceipts: false });
    closing.push(alice, carol, bob);
    // Alice looked both up: Bob on news, Carol on club.
    assert.equal(await alice.resolve(`${bob.local.username}@${news.name}`), bob.local.uuid);
    assert.equal(await alice.resolve(carol.local.username), carol.local.uuid);
    await bob.sendText(`${alice.local.username}@${club.name}`, "from bob on news");
    await carol.sendText(alice.local.username, "from carol on club");
    const waiting = async (): Promise<{ sourceServer: string | null }[]> =>
      queryServerDb(club, `SELECT "sourceServer" FROM "Envelope" WHERE "accountId" = $1`, [alice.local.uuid]);
    const deadline = Date.now() + 10_000;
    while ((await waiting()).length < 2) {
      assert.ok(Date.now() < deadline, "both envelopes wait on club");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual((await waiting()).map((e) => e.sourceServer).sort(), [news.name, null]);

    // Club's operator swaps the origins of what waits for alice.
    await writeServerDb(
      club,
      `UPDATE "Envelope" SET "sourceServer" = CASE WHEN "sourceServer" IS NULL THEN $1 ELSE NULL END WHERE "accountId" = $2`,
      [news.name, alice.local.uuid],
    );
    const messages = inbox(alice);
    const failures = collect(alice, "decryptionFailed");
    const refusals = collect(alice, "serverBindingRefused");
    await alice.connect();
    await until(failures, 2);
    assert.deepEqual(messages, [], "nothing shown as Bob or Carol");
    assert.deepEqual(
      failures.map((f) => f.reason),
      ["server_mismatch", "server_mismatch"],
    );
    const byUuid = (a: { uuid: string }, b: { uuid: string }): number => a.uuid.localeCompare(b.uuid);
    assert.deepEqual(
      refusals.map(({ envelopeId: _, ...r }) => r).sort(byUuid),
      [
        { uuid: bob.local.uuid, boundTo: news.name, claimed: null },
        { uuid: carol.local.uuid, boundTo: null, claimed: news.name },
      ].sort(byUuid),
    );
    assert.equal(alice.serverOf(bob.local.uuid), news.name, "the bindings did not move");
    assert.equal(alice.serverOf(carol.local.uuid), null);
  });

  it("the terminal chat sends to name@server and shows the sender as name@server", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zimchat-chat-federation-"));
    try {
      const as = (name: string, ...args: string[]): string[] => [...args, "--profile", join(dir, name), "--json"];
      const [registered] = ok(await cli(as("carol", "register", "--server", club.url, "--username", "carol")));
      assert.equal(registered?.address, `carol@${club.name}`, "how others reach her");
      const [whoami] = ok(await cli(as("carol", "whoami")));
      assert.equal(whoami?.address, `carol@${club.name}`);
      ok(await cli(as("dudu", "register", "--server", news.url, "--username", "dudu")));
      const [sent] = only(
        ok(await cli(as("carol", "send", `dudu@${news.name}`, "Hello", "across", "servers"))),
        "sent",
      );
      assert.equal(sent?.to, `dudu@${news.name}`);
      const [message] = only(ok(await cli(as("dudu", "receive"))), "message");
      assert.equal(message?.text, "Hello across servers");
      assert.equal(message?.from, `carol@${club.name}`);
      assert.equal(message?.fromServer, club.name);
      // A reply by the short name of a local user and by name@server of a remote one.
      ok(await cli(as("dudu", "send", `carol@${club.name}`, "Got", "it")));
      const [reply] = only(ok(await cli(as("carol", "receive"))), "message");
      assert.equal(reply?.from, `dudu@${news.name}`);
      // A group with a member of another homeserver, from the terminal chat.
      const [created] = only(
        ok(await cli(as("carol", "group", "create", "Both servers", `dudu@${news.name}`))),
        "groupChanged",
      );
      assert.deepEqual(created?.members, ["carol", `dudu@${news.name}`]);
      const [groupSent] = only(
        ok(await cli(as("carol", "group", "send", "Both servers", "Hello", "group"))),
        "groupSent",
      );
      assert.equal(groupSent?.devices, 1, "dudu's one device, on news");
      assert.equal(groupSent?.notDelivered, undefined);
      const dudus = ok(await cli(as("dudu", "receive")));
      assert.deepEqual(only(dudus, "groupUpdated")[0]?.members, [`carol@${club.name}`, "dudu"]);
      const [groupMessage] = only(dudus, "message");
      assert.equal(groupMessage?.text, "Hello group");
      assert.equal(groupMessage?.from, `carol@${club.name}`);
      const unknown = await cli(as("carol", "send", `nobody_here@${news.name}`, "hi"));
      assert.equal(unknown.code, 1);
      assert.match(unknown.stdout, /"code":"unknown_user"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
