/**
 * Groups across servers, end to end: three real `zimchat serve` processes
 * federating on loopback (club, news, clinic), real clients on SQLite
 * stores. One multi-recipient upload reaches members on every server; each
 * server's disk holds its own members' envelopes only; removal works across
 * servers.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { GroupUpdatedEvent, ZimClient } from "../src/index.js";
import { inbox, registerDevice, until } from "@zimchat/testing/spawn";
import { collect, eventually, federatedHomeserver, type FederatedHomeserver } from "./support/federation.js";
import { queryServerDb } from "./support/server-db.js";

/** Every file a server keeps (database, WAL, data dir but its keys), as someone holding its disk would read them. */
function diskOf(server: FederatedHomeserver): Buffer {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (name !== "keys") walk(path);
      } else files.push(path);
    }
  };
  walk(server.dataDir);
  const db = server.databaseUrl.slice("file:".length);
  for (const path of [db, `${db}-wal`]) if (existsSync(path) && !files.includes(path)) files.push(path);
  return Buffer.concat(files.map((path) => readFileSync(path)));
}

/** The accounts a server holds envelopes for. */
async function mailboxes(server: FederatedHomeserver): Promise<string[]> {
  const rows = await queryServerDb<{ accountId: string }>(server, `SELECT DISTINCT "accountId" FROM "Envelope"`);
  return rows.map((r) => r.accountId).sort();
}

const settle = (ms = 800): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe("federation: a group with members on three servers", () => {
  let club: FederatedHomeserver;
  let news: FederatedHomeserver;
  let clinic: FederatedHomeserver;
  const closing: ZimClient[] = [];
  before(async () => {
    [club, news, clinic] = await Promise.all([federatedHomeserver(), federatedHomeserver(), federatedHomeserver()]);
  });
  after(async () => {
    for (const client of closing) await client.close().catch(() => undefined);
    await Promise.all([club?.stop(), news?.stop(), clinic?.stop()]);
  });

  it("create, a message from a member on each server, each server's disk holds only its own members; removal", async () => {
    const options = { sendReceipts: false };
    const alice = await registerDevice(club.url, undefined, options);
    const dave = await registerDevice(club.url, undefined, options);
    const bob = await registerDevice(news.url, undefined, options);
    const carol = await registerDevice(clinic.url, undefined, options);
    closing.push(alice, dave, bob, carol);
    const members = { alice, dave, bob, carol };
    const inboxes = Object.fromEntries(Object.entries(members).map(([k, c]) => [k, inbox(c)])) as Record<
      keyof typeof members,
      ReturnType<typeof inbox>
    >;
    const updates = Object.fromEntries(
      Object.entries(members).map(([k, c]) => [k, collect(c, "groupUpdated")]),
    ) as Record<keyof typeof members, GroupUpdatedEvent[]>;
    const failures = Object.values(members).map((c) => collect(c, "decryptionFailed"));

    // Alice (club) creates it with Dave (club), bob@news and carol@clinic; the others are offline.
    const group = await alice.createGroup("Three servers", [
      dave.local.username,
      `${bob.local.username}@${news.name}`,
      `${carol.local.username}@${clinic.name}`,
    ]);
    assert.deepEqual(group.memberServers, { [bob.local.uuid]: news.name, [carol.local.uuid]: clinic.name });
    const sent = await alice.sendGroupText(group.id, "from club");
    assert.deepEqual(
      (sent.response.remote ?? []).map((r) => [r.uuid, r.server, r.status]).sort(),
      [
        [bob.local.uuid, news.name, 200],
        [carol.local.uuid, clinic.name, 200],
      ].sort(),
    );
    assert.deepEqual(
      sent.response.recipients.map((r) => r.uuid),
      [dave.local.uuid],
    );
    // Each server holds envelopes for its own members only, and news and clinic never saw the members elsewhere.
    assert.deepEqual(await mailboxes(news), [bob.local.uuid]);
    assert.deepEqual(await mailboxes(clinic), [carol.local.uuid]);
    assert.deepEqual(await mailboxes(club), [dave.local.uuid]);
    const newsDisk = diskOf(news);
    const clinicDisk = diskOf(clinic);
    for (const uuid of [dave.local.uuid, carol.local.uuid])
      assert.equal(newsDisk.includes(uuid), false, `news's disk names ${uuid}`);
    for (const uuid of [dave.local.uuid, bob.local.uuid])
      assert.equal(clinicDisk.includes(uuid), false, `clinic's disk names ${uuid}`);

    for (const client of [dave, bob, carol]) await client.connect();
    await alice.connect();
    for (const name of ["dave", "bob", "carol"] as const) {
      const [update] = await until(updates[name], 1);
      assert.equal(update?.group.id, group.id);
      const [message] = await until(inboxes[name], 1);
      assert.equal(message?.text, "from club");
      assert.equal(message?.group, group.id);
      assert.equal(message?.from, alice.local.uuid);
      assert.equal(message?.sealed, true);
    }
    // Each member sees the others where they are.
    assert.equal(bob.serverOf(carol.local.uuid), clinic.name);
    assert.equal(bob.serverOf(dave.local.uuid), club.name);
    assert.equal(carol.serverOf(bob.local.uuid), news.name);
    assert.equal(dave.serverOf(carol.local.uuid), clinic.name);
    assert.deepEqual(bob.group(group.id)?.memberServers, {
      [alice.local.uuid]: club.name,
      [dave.local.uuid]: club.name,
      [carol.local.uuid]: clinic.name,
    });

    // A message from a member on news, then from one on clinic.
    await bob.sendGroupText(group.id, "from news");
    for (const name of ["alice", "dave", "carol"] as const) {
      const got = await until(inboxes[name], name === "alice" ? 1 : 2);
      const message = got.at(-1);
      assert.equal(message?.text, "from news");
      assert.equal(message?.from, bob.local.uuid);
      assert.equal(message?.fromServer, news.name);
      assert.equal(message?.group, group.id);
    }
    await carol.sendGroupText(group.id, "from clinic");
    for (const name of ["alice", "dave", "bob"] as const) {
      const got = await until(inboxes[name], name === "dave" ? 3 : 2);
      const message = got.at(-1);
      assert.equal(message?.text, "from clinic");
      assert.equal(message?.from, carol.local.uuid);
      assert.equal(message?.fromServer, clinic.name);
    }

    // Alice removes carol@clinic: she is told, and gets nothing from then on, from any server.
    await alice.removeGroupMembers(group.id, [`${carol.local.username}@${clinic.name}`]);
    const [, removal] = await until(updates.carol, 2);
    assert.equal(removal?.left, true);
    await until(updates.bob, 2);
    await until(updates.dave, 2);
    const carolHad = inboxes.carol.length;
    const afterRemoval = await alice.sendGroupText(group.id, "without carol");
    assert.deepEqual(
      (afterRemoval.response.remote ?? []).map((r) => r.uuid),
      [bob.local.uuid],
    );
    await bob.sendGroupText(group.id, "without carol, from news");
    assert.equal((await until(inboxes.bob, 3)).at(-1)?.text, "without carol");
    assert.equal((await until(inboxes.alice, 3)).at(-1)?.text, "without carol, from news");
    assert.equal((await until(inboxes.dave, 5)).at(-1)?.text, "without carol, from news");
    await settle();
    assert.equal(inboxes.carol.length, carolHad, "carol got nothing after her removal");
    assert.deepEqual(await mailboxes(clinic), [], "nothing waits for carol either");
    for (const f of failures) assert.deepEqual(f, []);

    // Bob reinstalls: news refuses alice's next group message for him alone (410 in `remote`, dave still gets it);
    // her client repairs his sessions, sends him her sender key again and re-sends to him alone.
    await bob.resetIdentity();
    const repaired = await alice.sendGroupText(group.id, "after bob's reinstall");
    assert.deepEqual(
      (repaired.response.remote ?? []).map((r) => [r.uuid, r.status]),
      [[bob.local.uuid, 200]],
    );
    assert.equal((await until(inboxes.bob, 4)).at(-1)?.text, "after bob's reinstall");
    assert.equal((await until(inboxes.dave, 6)).at(-1)?.text, "after bob's reinstall");
    assert.equal(inboxes.dave.filter((m) => m.text === "after bob's reinstall").length, 1, "dave got it once");
  });

  it("news down: club queues bob's copy of a group message; bob reinstalls; club gives up; alice re-sends to him alone", async () => {
    const options = { sendReceipts: false };
    const alice = await registerDevice(club.url, undefined, options);
    const bob = await registerDevice(news.url, undefined, options);
    const carol = await registerDevice(clinic.url, undefined, options);
    closing.push(alice, bob, carol);
    const toBob = inbox(bob);
    const toCarol = inbox(carol);
    const failures = collect(alice, "remoteDeliveryFailed");
    await alice.connect();
    const group = await alice.createGroup("Queued", [
      `${bob.local.username}@${news.name}`,
      `${carol.local.username}@${clinic.name}`,
    ]);
    await alice.sendGroupText(group.id, "before");
    await bob.poll();
    assert.equal(toBob.at(-1)?.text, "before");

    let sent: Awaited<ReturnType<ZimClient["sendGroupText"]>> | undefined;
    await news.restart(async () => {
      sent = await alice.sendGroupText(group.id, "while news was down");
    });
    const byUuid = new Map((sent?.response.remote ?? []).map((r) => [r.uuid, r]));
    assert.equal(byUuid.get(bob.local.uuid)?.queued, true, "club holds bob's copy");
    assert.equal(byUuid.get(carol.local.uuid)?.status, 200);
    assert.equal(alice.store.valuesWithPrefix("remoteSend:").length, 1, "its content is kept for a re-send");
    await carol.poll();
    assert.equal(toCarol.at(-1)?.text, "while news was down");

    // Bob reinstalls: the queued copy is for a stale device. News asking club something makes club retry now.
    await bob.resetIdentity();
    await bob.connect();
    await bob.api.remoteLookupUsername(club.name, alice.local.username);
    await eventually(
      "bob gets the message again, re-sent to him alone",
      () => toBob.at(-1)?.text === "while news was down",
      60_000,
    );
    assert.equal(toBob.at(-1)?.group, group.id);
    assert.deepEqual(failures, [], "repaired without the app");
    await eventually("the kept content is dropped", () => !alice.store.valuesWithPrefix("remoteSend:").length);
    await settle();
    assert.equal(toCarol.filter((m) => m.text === "while news was down").length, 1, "carol got it once");
  });
});
