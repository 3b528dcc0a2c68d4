import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { limits, type Envelope, type OutgoingMessage, type RemoteDeliveryFailed } from "@zimchat/protocol";
import { PublicKey } from "@signalapp/libsignal-client";
import type { SignalDevice } from "@zimchat/testing/signal";
import { defaultRateLimits } from "../../src/config.js";
import {
  federated,
  federatedPair,
  freePort,
  uploadKeys,
  type FederatedPair,
  type FederatedServer,
} from "../support/federation.js";
import { encryptFor, linkDevice } from "../support/harness.js";
import { certificateFor, setAccess } from "../support/sealed.js";

/** Bob's queued envelopes on his own server. */
async function inbox(server: FederatedServer, device: SignalDevice): Promise<Envelope[]> {
  const res = await server.http().get("/v1/messages").set("authorization", device.authHeader);
  assert.equal(res.status, 200);
  return res.body.envelopes as Envelope[];
}

async function ack(server: FederatedServer, device: SignalDevice, envelopes: Envelope[]): Promise<void> {
  if (!envelopes.length) return;
  const res = await server
    .http()
    .post("/v1/messages/ack")
    .set("authorization", device.authHeader)
    .send({ ids: envelopes.map((e) => e.id) });
  assert.equal(res.status, 200);
}

/** Starts alice's session with every device of `to` from a bundle fetched through alice's server. */
async function remoteSession(home: FederatedServer, from: SignalDevice, peer: FederatedServer, to: SignalDevice) {
  const bundle = await home
    .http()
    .get(`/v1/federation/${peer.name}/keys/${to.uuid}/*`)
    .set("authorization", from.authHeader);
  assert.equal(bundle.status, 200, JSON.stringify(bundle.body));
  await from.processBundle(to.uuid, bundle.body);
  return bundle.body.devices as { deviceId: number; registrationId: number }[];
}

function relay(
  home: FederatedServer,
  from: SignalDevice,
  peer: FederatedServer,
  to: string,
  messages: OutgoingMessage[],
) {
  return home
    .http()
    .put(`/v1/federation/${peer.name}/messages/${to}`)
    .set("authorization", from.authHeader)
    .send({ messages });
}

async function metric(server: FederatedServer, line: string): Promise<number | null> {
  const text = (await server.http().get("/metrics")).text;
  const found = text.split("\n").find((l) => l.startsWith(line + " "));
  return found ? Number(found.slice(line.length + 1)) : null;
}

describe("federated delivery: club relays alice's sends to bob's server", () => {
  let pair: FederatedPair;
  let club: FederatedServer;
  let news: FederatedServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  before(async () => {
    pair = await federatedPair();
    ({ club, news, alice, bob } = pair);
  });
  after(async () => pair.stop());

  it("delivers a prekey message and later ones to offline bob, stamped with club's name; bob replies the same way", async () => {
    const devices = await remoteSession(club, alice, news, bob);
    const first = await relay(
      club,
      alice,
      news,
      bob.uuid,
      await encryptFor(alice, { uuid: bob.uuid, devices }, "hi bob"),
    );
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.queued, false);
    assert.equal(first.body.envelopes.length, 1);
    const second = await relay(
      club,
      alice,
      news,
      bob.uuid,
      await encryptFor(alice, { uuid: bob.uuid, devices }, "again"),
    );
    assert.equal(second.body.queued, false);

    const queued = await inbox(news, bob);
    assert.deepEqual(
      queued.map((e) => e.id),
      [first.body.envelopes[0].id, second.body.envelopes[0].id],
      "stored on news with the ids news answered, in order",
    );
    for (const e of queued) {
      assert.equal(e.sourceServer, club.name);
      assert.equal(e.sourceUuid, alice.uuid);
      assert.equal(e.sourceDeviceId, 1);
    }
    assert.equal(queued[0]!.type, "prekey");
    assert.equal(await bob.decrypt(alice.uuid, 1, queued[0]!.type, queued[0]!.content), "hi bob");
    assert.equal(await bob.decrypt(alice.uuid, 1, queued[1]!.type, queued[1]!.content), "again");
    await ack(news, bob, queued);

    // Bob answers through his own server: a whisper message on the session alice started.
    const reply = await relay(news, bob, club, alice.uuid, [
      {
        ...(await bob.encrypt(alice.uuid, 1, "hi alice")),
        destinationDeviceId: 1,
        destinationRegistrationId: alice.registrationId,
      },
    ]);
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const got = await inbox(club, alice);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.sourceServer, news.name);
    assert.equal(await alice.decrypt(bob.uuid, 1, got[0]!.type, got[0]!.content), "hi alice");
    await ack(club, alice, got);
  });

  it("passes news's 409 and 410 back to the client, and stores nothing", async () => {
    const missing = await relay(club, alice, news, bob.uuid, []);
    assert.equal(missing.status, 400, "an empty send is refused by club itself");
    const wrongDevice = await relay(club, alice, news, bob.uuid, [
      { ...(await alice.encrypt(bob.uuid, 1, "x")), destinationDeviceId: 2, destinationRegistrationId: 1 },
    ]);
    assert.equal(wrongDevice.status, 409);
    assert.equal(wrongDevice.body.code, "mismatched_devices");
    assert.deepEqual(wrongDevice.body.missingDevices, [1]);
    assert.deepEqual(wrongDevice.body.extraDevices, [2]);
    const stale = await relay(club, alice, news, bob.uuid, [
      {
        ...(await alice.encrypt(bob.uuid, 1, "x")),
        destinationDeviceId: 1,
        destinationRegistrationId: (bob.registrationId % 16000) + 1,
      },
    ]);
    assert.equal(stale.status, 410);
    assert.equal(stale.body.code, "stale_devices");
    assert.deepEqual(stale.body.staleDevices, [1]);
    const unknown = await relay(club, alice, news, "7c0c3a5e-2d1a-4b8a-9a4e-6f7d8e9fa0b1", [
      { ...(await alice.encrypt(bob.uuid, 1, "x")), destinationDeviceId: 1, destinationRegistrationId: 1 },
    ]);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await inbox(news, bob), [], "nothing was stored on news");
    const garbage = await relay(club, alice, news, bob.uuid, [
      {
        type: "whisper",
        destinationDeviceId: 1,
        destinationRegistrationId: bob.registrationId,
        content: randomBytes(64).toString("base64"),
      },
    ]);
    assert.equal(garbage.status, 400);
    assert.equal(garbage.body.code, "invalid_ciphertext", "club checks the content before relaying it");
  });

  it("relays a sealed send with bob's access key (checked by news only); a wrong key is news's 401", async () => {
    const accessKey = await setAccess(news, bob);
    const certificate = await certificateFor(club, alice);
    const sealed = {
      ...(await alice.sealedEncrypt(bob.uuid, 1, "sealed hi", certificate)),
      destinationDeviceId: 1,
      destinationRegistrationId: bob.registrationId,
    };
    const wrong = await club
      .http()
      .put(`/v1/federation/${news.name}/messages/${bob.uuid}`)
      .set("unidentified-access-key", randomBytes(16).toString("base64"))
      .send({ messages: [sealed] });
    assert.equal(wrong.status, 401);
    const sent = await club
      .http()
      .put(`/v1/federation/${news.name}/messages/${bob.uuid}`)
      .set("unidentified-access-key", accessKey.toString("base64"))
      .send({ messages: [sealed] });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const got = await inbox(news, bob);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.sourceUuid, undefined, "a sealed envelope names no sender");
    assert.equal(got[0]!.sourceServer, club.name, "only the server that relayed it");
    const trustRoot = PublicKey.deserialize(
      Buffer.from((await club.http().get("/v1/certificate/trust-root")).body.publicKey, "base64"),
    );
    const opened = await bob.sealedDecrypt(got[0]!.content, trustRoot);
    assert.equal(opened.plaintext, "sealed hi");
    assert.equal(opened.senderUuid, alice.uuid);
    await ack(news, bob, got);
  });

  it("refuses an unsigned transaction, a body that is not the one digested, and one from a server not accepted", async () => {
    const body = { sends: [{ id: "0a3c5e7f-1b2d-4c6e-8f0a-1b2c3d4e5f60", destination: bob.uuid, messages: [] }] };
    const unsigned = await news.http().put("/federation/v1/send/aaaaaaaaaaaaaaaaaaaaaa").send(body);
    assert.equal(unsigned.status, 401);
    assert.equal(unsigned.body.reason, "unsigned");
    // A correctly signed request whose body was swapped in transit.
    const path = "/federation/v1/send/bbbbbbbbbbbbbbbbbbbbbb";
    const { signRequest } = await import("../../src/federation/request-signing.js");
    const key = club.home.services.federation.document.keys()[0]!;
    const headers = await signRequest(
      {
        method: "PUT",
        url: `${news.url}${path}`,
        body: Buffer.from(JSON.stringify({ sends: [] })),
        origin: club.name,
        destination: news.name,
      },
      key,
    );
    const swapped = await news.http().put(path).set(headers).set("content-type", "application/json").send(body);
    assert.equal(swapped.status, 401);
    assert.equal(swapped.body.reason, "bad_digest");
    // Signed and digested, but not JSON; over the body limit (refused unread); a field of the wrong length.
    const signedRaw = async (raw: Buffer) =>
      news
        .http()
        .put(path)
        .set(
          await signRequest(
            { method: "PUT", url: `${news.url}${path}`, body: raw, origin: club.name, destination: news.name },
            key,
          ),
        )
        .set("content-type", "application/json")
        .send(raw.toString());
    const malformed = await signedRaw(Buffer.from('{"sends": ['));
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.code, "malformed_json");
    const huge = await signedRaw(
      Buffer.from(JSON.stringify({ pad: "x".repeat(limits.maxFederationTransactionBytes) })),
    );
    assert.equal(huge.status, 413);
    assert.equal(huge.body.code, "body_too_large");
    const shortKey = await signedRaw(
      Buffer.from(JSON.stringify({ sends: [{ ...body.sends[0], accessKey: randomBytes(15).toString("base64") }] })),
    );
    assert.equal(shortKey.status, 400);
    assert.ok(
      (shortKey.body.issues as { path: unknown[] }[]).some((i) => i.path.join(".") === "body.sends.0.accessKey"),
      JSON.stringify(shortKey.body),
    );
    const closed = await federated({ federation: "allowlist", federationAllow: [] });
    try {
      const refused = await club.home.services.federation.request(closed.name, "PUT", path, body);
      assert.equal(refused.status, 403);
      assert.equal((refused.body as { code: string }).code, "peer_not_allowed");
    } finally {
      await closed.stop();
    }
    assert.deepEqual(await inbox(news, bob), []);
  });
});

describe("federated delivery while the recipient's server is down", () => {
  let pair: FederatedPair;
  let club: FederatedServer;
  let news: FederatedServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  before(async () => {
    pair = await federatedPair();
    ({ club, news, alice, bob } = pair);
  });
  after(async () => pair.stop());

  it("queues sends, backs off, delivers each exactly once when news is back and heard from; a replayed transaction stores nothing", async () => {
    const devices = await remoteSession(club, alice, news, bob);
    await news.halt();
    const ids: string[] = [];
    for (const text of ["one", "two", "three"]) {
      const res = await relay(club, alice, news, bob.uuid, await encryptFor(alice, { uuid: bob.uuid, devices }, text));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.queued, true, "news is down: queued in club's outbox");
      ids.push(res.body.id);
    }
    assert.equal(new Set(ids).size, 3);
    assert.equal(await metric(club, `zimchat_federation_outbox_depth{peer="${news.name}"}`), 3);
    assert.ok(((await metric(club, `zimchat_federation_retries_total{peer="${news.name}"}`)) ?? 0) >= 1);
    const backoff = await metric(club, `zimchat_federation_backoff_seconds{peer="${news.name}"}`);
    assert.ok(backoff !== null && backoff >= 10, `club backs off (${backoff} s)`);
    // A sealed send is never queued: nobody could be told if it failed later.
    const sealed = await club
      .http()
      .put(`/v1/federation/${news.name}/messages/${bob.uuid}`)
      .set("unidentified-access-key", randomBytes(16).toString("base64"))
      .send({
        messages: [
          {
            ...(await alice.sealedEncrypt(bob.uuid, 1, "s", await certificateFor(club, alice))),
            destinationDeviceId: 1,
            destinationRegistrationId: bob.registrationId,
          },
        ],
      });
    assert.equal(sealed.status, 502);
    assert.equal(sealed.body.code, "peer_unavailable");

    await news.restart();
    // News is heard from (a signed request to club): club's backoff ends at once, long before its 10 s.
    const lookup = await news.home.services.federation.request(
      club.name,
      "GET",
      "/federation/v1/accounts/username/alice",
    );
    assert.equal(lookup.status, 200);
    const deadline = Date.now() + 5000;
    let got: Envelope[] = [];
    while (Date.now() < deadline && got.length < 3) {
      await new Promise((r) => setTimeout(r, 100));
      got = await inbox(news, bob);
    }
    assert.equal(got.length, 3, "all three arrived after news was heard from");
    assert.deepEqual(
      await Promise.all(got.map((e) => bob.decrypt(alice.uuid, 1, e.type, e.content))),
      ["one", "two", "three"],
      "in order",
    );
    // Club deletes each send once news's answer is in: just after news committed it.
    let depth = await metric(club, `zimchat_federation_outbox_depth{peer="${news.name}"}`);
    for (let i = 0; i < 50 && depth !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      depth = await metric(club, `zimchat_federation_outbox_depth{peer="${news.name}"}`);
    }
    assert.equal(depth, 0, "the outbox is empty");
    assert.equal(await metric(club, `zimchat_federation_backoff_seconds{peer="${news.name}"}`), 0);

    // The same sends again, as a retried transaction would carry them: answered from news's records, nothing new.
    const replay = await news.home.services.federation.receive(club.name, {
      sends: ids.map((id, i) => ({
        id,
        destination: bob.uuid,
        source: { uuid: alice.uuid, deviceId: 1 },
        messages: [
          {
            type: got[i]!.type,
            destinationDeviceId: 1,
            destinationRegistrationId: bob.registrationId,
            content: got[i]!.content,
          },
        ],
      })),
    });
    assert.deepEqual(
      replay.results.map((r) => r.response?.envelopes[0]?.id),
      got.map((e) => e.id),
      "the first answers, with the envelope ids news stored",
    );
    assert.equal((await inbox(news, bob)).length, 3, "no second copy");
    await ack(news, bob, got);
  });

  it("tells alice's device when a queued send is refused later (remote-delivery-failed), until it confirms", async () => {
    const devices = await remoteSession(club, alice, news, bob);
    await news.halt();
    const queued = await relay(
      club,
      alice,
      news,
      bob.uuid,
      await encryptFor(alice, { uuid: bob.uuid, devices }, "late"),
    );
    assert.equal(queued.body.queued, true);
    await news.restart();
    // Bob links a second device while club waits: the queued send now misses it.
    await linkDevice(news, bob);
    const socket = await club.connect(alice);
    const failure = new Promise<RemoteDeliveryFailed>((resolve) =>
      socket.socket.on("remote-delivery-failed", (f, received) => {
        received();
        resolve(f);
      }),
    );
    await news.home.services.federation.request(club.name, "GET", "/federation/v1/accounts/username/alice");
    const notice = await failure;
    assert.equal(notice.id, queued.body.id);
    assert.equal(notice.server, news.name);
    assert.equal(notice.destination, bob.uuid);
    assert.equal(notice.reason, "mismatched_devices");
    assert.deepEqual(notice.missingDevices, [2]);
    socket.close();
    // Confirmed: club deletes the notice once the ack is in (a write, so wait for it rather than for a fixed time),
    // and does not send it again on the next connection.
    for (
      let i = 0;
      (await club.home.services.federation.outbox.failuresFor({ accountId: alice.uuid, deviceId: 1 })).length;
      i++
    ) {
      assert.ok(i < 100, "the confirmed notice was never deleted");
      await new Promise((r) => setTimeout(r, 100));
    }
    const again = await club.connect(alice);
    let repeated = false;
    again.socket.on("remote-delivery-failed", () => (repeated = true));
    await again.queueEmpty;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(repeated, false);
    again.close();
  });

  it("limits what one origin may relay: news answers 429 and club backs off", async () => {
    const strict = await federated({
      rateLimits: { ...defaultRateLimits, federationSend: { points: 1, durationSeconds: 3600 } },
    });
    try {
      const carol = await strict.register("carol");
      await uploadKeys(strict, carol);
      const devices = await remoteSession(club, alice, strict, carol);
      const first = await relay(
        club,
        alice,
        strict,
        carol.uuid,
        await encryptFor(alice, { uuid: carol.uuid, devices }, "1"),
      );
      assert.equal(first.body.queued, false);
      const second = await relay(
        club,
        alice,
        strict,
        carol.uuid,
        await encryptFor(alice, { uuid: carol.uuid, devices }, "2"),
      );
      assert.equal(second.body.queued, true, "the transaction got 429: queued, not lost");
      const backoff = await metric(club, `zimchat_federation_backoff_seconds{peer="${strict.name}"}`);
      assert.ok(backoff !== null && backoff >= 10);
    } finally {
      await strict.stop();
    }
  });

  it("caps what waits for one down server (507 outbox_full), and sends to other servers go on", async () => {
    const tight = await federated({ federationOutboxMaxPerPeer: 2 });
    try {
      const dave = await tight.register("dave");
      const devices = await remoteSession(tight, dave, club, alice);
      const down = `127.0.0.1:${await freePort()}`;
      const message = async () => ({
        type: "prekey" as const,
        destinationDeviceId: 1,
        destinationRegistrationId: 1,
        content: (await dave.encrypt(alice.uuid, 1, "x")).content,
      });
      const sendTo = async (server: string) =>
        tight
          .http()
          .put(`/v1/federation/${server}/messages/${bob.uuid}`)
          .set("authorization", dave.authHeader)
          .send({ messages: [await message()] });
      for (let i = 0; i < 2; i++) assert.equal((await sendTo(down)).body.queued, true);
      const full = await sendTo(down);
      assert.equal(full.status, 507);
      assert.equal(full.body.code, "outbox_full");
      assert.equal(full.headers["retry-after"], "60");
      // Another destination is not held up by the full one.
      const other = await relay(
        tight,
        dave,
        club,
        alice.uuid,
        await encryptFor(dave, { uuid: alice.uuid, devices }, "hi"),
      );
      assert.equal(other.status, 200, JSON.stringify(other.body));
      assert.equal(other.body.queued, false);
      await ack(club, alice, await inbox(club, alice));
    } finally {
      await tight.stop();
    }
  });
});
