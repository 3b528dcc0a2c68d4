/**
 * Federation between three real `zimchat serve` processes on loopback (SQLite
 * files, or schemas of the test PostgreSQL), driven over HTTP only.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Envelope } from "@zimchat/protocol";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { federatedHomeserver, zimchatBin, type Homeserver } from "@zimchat/testing/spawn";
import type { SeizureReport } from "../../src/seizure/report.js";
import { SignalDevice } from "@zimchat/testing/signal";
import { callJson } from "../support/child-server.js";

interface Peer {
  name: string;
  server: Homeserver;
}

async function startPeer(): Promise<Peer> {
  const server = await federatedHomeserver();
  return { name: server.name, server };
}

async function register(peer: Peer, username: string): Promise<SignalDevice> {
  const device = new SignalDevice();
  const res = await callJson(peer.server.url, "POST", "/v1/accounts", device.registration(username));
  assert.equal(res.status, 201, JSON.stringify(res.body));
  device.uuid = res.body.uuid;
  const keys = await callJson(peer.server.url, "PUT", "/v1/keys", device.keyUpload(20, 20), device.authHeader);
  assert.equal(keys.status, 204);
  return device;
}

/** `from` (on `home`) resolves `username@peer` and starts a session from its bundle, through its own server. */
async function resolve(home: Peer, from: SignalDevice, peer: Peer, username: string): Promise<string> {
  const lookup = await callJson(
    home.server.url,
    "GET",
    `/v1/federation/${peer.name}/accounts/username/${username}`,
    undefined,
    from.authHeader,
  );
  assert.equal(lookup.status, 200, JSON.stringify(lookup.body));
  const bundle = await callJson(
    home.server.url,
    "GET",
    `/v1/federation/${peer.name}/keys/${lookup.body.uuid}/*`,
    undefined,
    from.authHeader,
  );
  assert.equal(bundle.status, 200);
  await from.processBundle(lookup.body.uuid, bundle.body);
  return lookup.body.uuid as string;
}

async function send(home: Peer, from: SignalDevice, peer: Peer, to: SignalDevice, text: string) {
  const message = await from.encrypt(to.uuid, 1, text);
  return callJson(
    home.server.url,
    "PUT",
    `/v1/federation/${peer.name}/messages/${to.uuid}`,
    { messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: to.registrationId }] },
    from.authHeader,
  );
}

/** Everything queued for `device`, acknowledged as read. */
async function drain(peer: Peer, device: SignalDevice): Promise<Envelope[]> {
  const all: Envelope[] = [];
  for (;;) {
    const page = await callJson(peer.server.url, "GET", "/v1/messages", undefined, device.authHeader);
    assert.equal(page.status, 200);
    const envelopes = page.body.envelopes as Envelope[];
    if (!envelopes.length) return all;
    all.push(...envelopes);
    const ack = await callJson(
      peer.server.url,
      "POST",
      "/v1/messages/ack",
      { ids: envelopes.map((e) => e.id) },
      device.authHeader,
    );
    assert.equal(ack.status, 200);
  }
}

async function decryptAll(device: SignalDevice, envelopes: Envelope[]): Promise<string[]> {
  const out: string[] = [];
  for (const e of envelopes) out.push(await device.decrypt(e.sourceUuid!, e.sourceDeviceId!, e.type, e.content));
  return out;
}

describe("three homeservers (real zimchat serve processes)", () => {
  let club: Peer;
  let news: Peer;
  let clinic: Peer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  let carol: SignalDevice;
  before(async () => {
    [club, news, clinic] = await Promise.all([startPeer(), startPeer(), startPeer()]);
    alice = await register(club, "alice");
    bob = await register(news, "bob");
    carol = await register(clinic, "carol");
  });
  after(async () => {
    await Promise.all([club, news, clinic].map((p) => p?.server.stop()));
  });

  it("alice@club, bob@news and carol@clinic write to each other: prekey first, then whisper, replies both ways", async () => {
    assert.equal(await resolve(club, alice, news, "bob"), bob.uuid);
    assert.equal(await resolve(club, alice, clinic, "carol"), carol.uuid);
    for (const text of ["hi bob", "second"]) {
      const res = await send(club, alice, news, bob, text);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.queued, false);
    }
    assert.equal((await send(club, alice, clinic, carol, "hi carol")).body.queued, false);

    const atBob = await drain(news, bob);
    assert.deepEqual(
      atBob.map((e) => [e.type, e.sourceServer, e.sourceUuid]),
      [
        ["prekey", club.name, alice.uuid],
        ["prekey", club.name, alice.uuid],
      ],
    );
    assert.deepEqual(await decryptAll(bob, atBob), ["hi bob", "second"]);
    const atCarol = await drain(clinic, carol);
    assert.deepEqual(await decryptAll(carol, atCarol), ["hi carol"]);

    // Replies travel the other way on the sessions alice started: plain whisper messages.
    assert.equal((await send(news, bob, club, alice, "hi alice, bob here")).body.queued, false);
    assert.equal((await send(clinic, carol, club, alice, "carol here")).body.queued, false);
    const atAlice = await drain(club, alice);
    assert.deepEqual(
      atAlice.map((e) => [e.type, e.sourceServer]),
      [
        ["whisper", news.name],
        ["whisper", clinic.name],
      ],
    );
    assert.deepEqual(await decryptAll(alice, atAlice), ["hi alice, bob here", "carol here"]);
  });

  it("news is killed while club relays to it: every send answered 200 arrives exactly once after news restarts", async () => {
    const answered: string[] = [];
    let queued = 0;
    const texts = Array.from({ length: 40 }, (_, i) => `m${i}`);
    // Encrypt in order (the ratchet), send concurrently in small groups; news dies in the middle.
    const messages = [];
    for (const text of texts) messages.push({ text, message: await alice.encrypt(bob.uuid, 1, text) });
    // SIGKILL, then the same command again on the same port and database (club backs off meanwhile).
    let restarted: Promise<void> | null = null;
    for (let i = 0; i < messages.length; i += 4) {
      // After three groups, news dies while the fourth is in flight.
      if (i === 12) restarted = news.server.restart();
      await Promise.all(
        messages.slice(i, i + 4).map(async ({ text, message }) => {
          const res = await callJson(
            club.server.url,
            "PUT",
            `/v1/federation/${news.name}/messages/${bob.uuid}`,
            { messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] },
            alice.authHeader,
          );
          assert.equal(res.status, 200, JSON.stringify(res.body));
          answered.push(text);
          if (res.body.queued) queued++;
        }),
      );
    }
    await restarted;
    assert.equal(answered.length, texts.length, "club answered every send: delivered or queued");
    assert.ok(queued > 0 && queued < texts.length, `some sends were delivered at once, some queued (${queued})`);
    // News's user asks club something: club hears from news and retries at once, not after its backoff.
    await resolve(news, bob, club, "alice");
    const deadline = Date.now() + 20_000;
    const received: Envelope[] = [];
    while (Date.now() < deadline && received.length < texts.length) {
      received.push(...(await drain(news, bob)));
      if (received.length < texts.length) await new Promise((r) => setTimeout(r, 200));
    }
    const ids = received.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, "no envelope twice");
    const plaintexts = await decryptAll(bob, received);
    assert.deepEqual([...plaintexts].sort(), [...texts].sort(), "each send exactly once");
    // Nothing is left waiting on club.
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await drain(news, bob), []);
  });

  it("a seizure report of each server passes every check, with an outbox of ciphertext only while news was down", async () => {
    // One send queued on club for a while: news stops, alice sends, the report runs, news comes back.
    await news.server.restart(async () => {
      const res = await send(club, alice, news, bob, "while news is down");
      assert.equal(res.body.queued, true, JSON.stringify(res));
      const { report } = await seizureReport(club);
      assert.equal(report.ok, true, JSON.stringify(report.checks.filter((c) => c.status !== "pass")));
      const outbox = report.checks.find((c) => c.id === "outbox-ciphertext");
      assert.equal(outbox?.status, "pass");
      assert.match(outbox!.detail, /all 1 messages queued for other servers parse/);
      assert.ok(report.held.some((line) => /^federation: 1 sends to accounts on other servers/.test(line)));
      // The federation identity key: what its seizure gives, and what the operator does then.
      const identity = report.files.find((f) => /[\\/]federation[\\/]identity\.key$/.test(f.path));
      assert.equal(identity?.kind, "private-key");
      assert.match(identity!.reveals, /impersonate this server to its peers/);
      assert.match(identity!.reveals, /until those peers re-pin/);
      assert.match(identity!.reveals, /zimchat federation-identity/);
    });
    await resolve(news, bob, club, "alice");
    const deadline = Date.now() + 10_000;
    let got: Envelope[] = [];
    while (Date.now() < deadline && !got.length) {
      got = await drain(news, bob);
      if (!got.length) await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(await decryptAll(bob, got), ["while news is down"]);
    for (const peer of [club, news, clinic]) {
      const { report } = await seizureReport(peer);
      assert.equal(report.ok, true, `${peer.name}: ${JSON.stringify(report.checks)}`);
    }
  });
});

/** The real `zimchat seizure-report --json` on a running server's data directory and database. */
async function seizureReport(peer: Peer): Promise<{ report: SeizureReport }> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      zimchatBin,
      "seizure-report",
      "--json",
      "--data-dir",
      peer.server.dataDir,
      "--database-url",
      peer.server.databaseUrl,
    ],
    { env: { ...process.env, DATABASE_URL: "", ZIMCHAT_DATA_DIR: "" }, maxBuffer: 16 << 20 },
  ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? "" }));
  return { report: JSON.parse(stdout) as SeizureReport };
}
