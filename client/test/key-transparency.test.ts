/**
 * Key transparency end to end: a real homeserver child process with the
 * key-transparency plugin enabled from its config file, and real clients.
 * A seized or malicious server is simulated by writing to its database
 * directly, as someone holding its disk could.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PrivateKey } from "@signalapp/libsignal-client";
import { keyLogHeadResponseSchema, keyLogInclusionResponseSchema } from "@zimchat/protocol";
import { SqliteDeviceStore, ZimClient, type KeyTransparencyFailure } from "../src/index.js";
import {
  deviceDir,
  freePort,
  type Homeserver,
  inbox,
  registerDevice,
  startHomeserver,
  until,
} from "@zimchat/testing/spawn";
import { queryServerDb, writeServerDb } from "./support/server-db.js";

const pluginPath = fileURLToPath(new URL("../../../plugins/dist/src/key-transparency/index.js", import.meta.url));
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const identityKeyOf = (client: ZimClient): string =>
  b64(PrivateKey.deserialize(client.local.identityPrivateKey).getPublicKey().serialize());

/** GETs a route of the log with a device's credentials (the routes are for members). */
async function logGet(client: ZimClient, path: string): Promise<Response> {
  const { uuid, deviceId, password, serverUrl } = client.local;
  return fetch(new URL(`/plugins/key-transparency${path}`, serverUrl), {
    headers: { authorization: `Basic ${Buffer.from(`${uuid}.${deviceId}:${password}`).toString("base64")}` },
  });
}

function failures(client: ZimClient): KeyTransparencyFailure[] {
  const list: KeyTransparencyFailure[] = [];
  client.on("keyTransparencyFailure", (f) => list.push(f));
  return list;
}

describe("key transparency (plugin + client)", () => {
  let server: Homeserver;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), "zimchat-kt-config-"));
    const config = join(dir, "zimchat.config.json");
    writeFileSync(config, JSON.stringify({ plugins: [{ use: pluginPath, config: { treeHeadMaxAgeSeconds: 600 } }] }));
    server = await startHomeserver(["--config", config, "--port", String(await freePort())]);
  });
  after(async () => server.stop());

  it("a normal conversation: every key is in the log, no failure, and a checked key is not checked again", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const aliceFailures = failures(alice);
    const bobFailures = failures(bob);
    const toBob = inbox(bob);
    const toAlice = inbox(alice);
    await alice.connect();
    await bob.connect();
    await alice.sendText(bob.local.username, "hi bob");
    await until(toBob, 1);
    await bob.sendText(alice.local.username, "hi alice");
    await until(toAlice, 1);
    for (let i = 0; i < 5; i++) await alice.sendText(bob.local.username, `message ${i}`);
    await until(toBob, 6);

    const head = keyLogHeadResponseSchema.parse(
      await (await fetch(`${server.url}/plugins/key-transparency/v1/head`)).json(),
    );
    assert.equal(
      (await fetch(`${server.url}/plugins/key-transparency/v1/inclusion?index=0`)).status,
      401,
      "leaves are for members only",
    );
    assert.ok(head.head.treeSize >= 2);
    assert.equal(alice.store.getValue("keyTransparency:logKey"), head.publicKey, "the log key is pinned on first use");
    assert.equal(
      alice.store.getValue(`keyTransparency:checked:${bob.local.uuid}`),
      identityKeyOf(bob),
      "bob's key was checked when the session started",
    );
    assert.equal(
      alice.store.getValue(`keyTransparency:checked:${alice.local.uuid}`),
      identityKeyOf(alice),
      "alice checked her own key when she connected",
    );
    // Bob checked alice's key after her first (PreKey) message, in the background.
    const deadline = Date.now() + 10_000;
    while (
      bob.store.getValue(`keyTransparency:checked:${alice.local.uuid}`) !== identityKeyOf(alice) &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(bob.store.getValue(`keyTransparency:checked:${alice.local.uuid}`), identityKeyOf(alice));
    assert.equal(await alice.checkKeyTransparency(bob.local.username), null);
    const inclusion = keyLogInclusionResponseSchema.parse(
      await (
        await logGet(
          alice,
          `/v1/inclusion?accountId=${bob.local.uuid}&identityKey=${encodeURIComponent(identityKeyOf(bob))}`,
        )
      ).json(),
    );
    assert.equal(inclusion.leaf.accountId, bob.local.uuid);
    assert.equal(inclusion.leaf.time % 86_400_000, 0, "logged to the day");
    // Cached: the log is asked once per key, not per message.
    // The server logs a request when it has answered.
    const settle = (): Promise<unknown> => new Promise((r) => setTimeout(r, 300));
    await settle();
    const requests = server.logs.filter((l) => l.includes("/plugins/key-transparency/v1/inclusion")).length;
    for (let i = 0; i < 3; i++) await alice.sendText(bob.local.username, `again ${i}`);
    assert.equal(await alice.checkKeyTransparency(bob.local.username), null);
    await settle();
    assert.equal(
      server.logs.filter((l) => l.includes("/plugins/key-transparency/v1/inclusion")).length,
      requests,
      "no new inclusion request",
    );
    assert.deepEqual(aliceFailures, []);
    assert.deepEqual(bobFailures, []);
    // Bad queries are refused with a code.
    const bad = await logGet(alice, "/v1/inclusion?accountId=nope");
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: string }).code, "invalid_request");
    await alice.close();
    await bob.close();
  });

  it("a server that hands out a key that is not in the log is detected (not_included)", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const seen = failures(alice);
    // The server swaps bob's identity key for its own and re-signs bob's pre-keys with it, so libsignal accepts the
    // bundle.
    const mallory = PrivateKey.generate();
    const forged = mallory.getPublicKey().serialize();
    await writeServerDb(server, `UPDATE "Account" SET "identityKey" = $1 WHERE "id" = $2`, [
      Buffer.from(forged),
      bob.local.uuid,
    ]);
    for (const table of ["SignedPreKey", "KyberLastResortKey", "KyberPreKey"]) {
      const rows = await queryServerDb<{ keyId: number; publicKey: Uint8Array }>(
        server,
        `SELECT "keyId", "publicKey" FROM "${table}" WHERE "accountId" = $1`,
        [bob.local.uuid],
      );
      for (const row of rows) {
        const signature = mallory.sign(new Uint8Array(row.publicKey) as Uint8Array<ArrayBuffer>);
        await writeServerDb(server, `UPDATE "${table}" SET "signature" = $1 WHERE "accountId" = $2 AND "keyId" = $3`, [
          Buffer.from(signature),
          bob.local.uuid,
          row.keyId,
        ]);
      }
    }
    // Documented behaviour: the message still goes (like an unverified key change), and the failure is raised.
    await alice.sendText(bob.local.username, "is this really bob?");
    assert.equal(seen.length, 1, JSON.stringify(seen));
    assert.equal(seen[0]!.reason, "not_included");
    assert.equal(seen[0]!.accountId, bob.local.uuid);
    assert.equal(seen[0]!.identityKey, b64(forged));
    // A forged key is never cached as checked: asking again fails again.
    assert.equal((await alice.checkKeyTransparency(bob.local.username))?.reason, "not_included");
    assert.equal(alice.store.getValue(`keyTransparency:checked:${bob.local.uuid}`), null);
    await alice.close();
    await bob.close();
  });

  it("an identity reset appends a new entry, and the peer's check passes for the new key", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const seen = failures(alice);
    await alice.sendText(bob.local.username, "before");
    const oldKey = identityKeyOf(bob);
    const before = keyLogHeadResponseSchema.parse(await (await logGet(alice, "/v1/head")).json()).head.treeSize;
    await bob.resetIdentity();
    const newKey = identityKeyOf(bob);
    assert.notEqual(newKey, oldKey);
    const afterReset = keyLogHeadResponseSchema.parse(await (await logGet(alice, "/v1/head")).json()).head.treeSize;
    assert.equal(afterReset, before + 1, "one new entry");
    await alice.sendText(bob.local.username, "after");
    assert.equal(alice.store.getValue(`keyTransparency:checked:${bob.local.uuid}`), newKey);
    assert.equal(await alice.checkKeyTransparency(bob.local.username), null);
    // Both keys stay in the append-only log.
    for (const key of [oldKey, newKey]) {
      const res = await logGet(
        alice,
        `/v1/inclusion?accountId=${bob.local.uuid}&identityKey=${encodeURIComponent(key)}`,
      );
      assert.equal(res.status, 200);
    }
    assert.deepEqual(seen, []);
    await alice.close();
    await bob.close();
  });

  it("a client configured with another log key reports log_key_changed", async () => {
    const other = b64(PrivateKey.generate().getPublicKey().serialize());
    const alice = await registerDevice(server.url, undefined, { keyTransparency: { publicKey: other } });
    const bob = await registerDevice(server.url);
    const seen = failures(alice);
    await alice.sendText(bob.local.username, "hi");
    assert.deepEqual(
      seen.map((f) => f.reason),
      ["log_key_changed"],
    );
    await alice.close();
    await bob.close();
  });

  it("a server that rewrites the log is detected on the next check (inconsistent)", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const seen = failures(alice);
    assert.equal(await alice.checkKeyTransparency(bob.local.username), null);
    // Quietly rewrite history: bob's entry now names another key. The restarted server rebuilds a different tree.
    const rows = await queryServerDb<{ key: string; value: string }>(
      server,
      `SELECT "key", "value" FROM "PluginEntry" WHERE "plugin" = $1`,
      ["key-transparency"],
    );
    const entry = rows.find((r) => (JSON.parse(r.value) as { accountId: string }).accountId === bob.local.uuid)!;
    const rewritten = {
      ...(JSON.parse(entry.value) as object),
      identityKey: b64(PrivateKey.generate().getPublicKey().serialize()),
    };
    await writeServerDb(server, `UPDATE "PluginEntry" SET "value" = $1 WHERE "plugin" = $2 AND "key" = $3`, [
      JSON.stringify(rewritten),
      "key-transparency",
      entry.key,
    ]);
    const aliceStore = join(deviceDir, `${alice.local.username}.db`);
    await alice.close();
    await server.restart();

    // Alice's device, reopened: it remembers the head it saw before the rewrite.
    const again = new ZimClient({ store: new SqliteDeviceStore(aliceStore) });
    const seenAgain = failures(again);
    const carol = await registerDevice(server.url);
    const failure = await again.checkKeyTransparency(carol.local.username);
    assert.equal(failure?.reason, "inconsistent", JSON.stringify(failure));
    assert.deepEqual(
      seenAgain.map((f) => f.reason),
      ["inconsistent"],
    );
    assert.deepEqual(seen, []);
    await again.close();
    await bob.close();
    await carol.close();
  });
});

describe("key transparency on a server without the log", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("nothing is checked by default, and a client that was given a log key reports the missing log as unavailable", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const quiet = failures(alice);
    await alice.sendText(bob.local.username, "no log here");
    assert.equal(await alice.checkKeyTransparency(bob.local.username), null);
    assert.deepEqual(quiet, []);
    assert.equal(alice.store.getValue("keyTransparency:logKey"), null, "nothing pinned");

    const expecting = await registerDevice(server.url, undefined, {
      keyTransparency: { publicKey: b64(PrivateKey.generate().getPublicKey().serialize()) },
    });
    const seen = failures(expecting);
    await expecting.sendText(bob.local.username, "where is the log?");
    assert.deepEqual(
      seen.map((f) => [f.reason, f.accountId]),
      [["unavailable", bob.local.uuid]],
    );
    const off = await registerDevice(server.url, undefined, { keyTransparency: false });
    assert.equal(await off.checkKeyTransparency(bob.local.username), null);
    await alice.close();
    await bob.close();
    await expecting.close();
    await off.close();
  });
});
