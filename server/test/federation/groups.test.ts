import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PublicKey } from "@signalapp/libsignal-client";
import type { Envelope } from "@zimchat/protocol";
import type { SignalDevice } from "@zimchat/testing/signal";
import { federated, uploadKeys, type FederatedServer } from "../support/federation.js";
import { linkDevice, startSession, testProvider } from "../support/harness.js";
import { certificateFor, setAccess } from "../support/sealed.js";

async function inbox(server: FederatedServer, device: SignalDevice): Promise<Envelope[]> {
  const res = await server.http().get("/v1/messages").set("authorization", device.authHeader);
  assert.equal(res.status, 200);
  const envelopes = res.body.envelopes as Envelope[];
  if (envelopes.length) {
    const ack = await server
      .http()
      .post("/v1/messages/ack")
      .set("authorization", device.authHeader)
      .send({ ids: envelopes.map((e) => e.id) });
    assert.equal(ack.status, 200);
  }
  return envelopes;
}

/** Every byte a server keeps on disk (SQLite file, its WAL, key files, logs). */
function diskText(server: FederatedServer): string {
  const files = (readdirSync(server.dataDir, { recursive: true }) as string[]).map((f) => join(server.dataDir, f));
  return files
    .map((f) => {
      try {
        return readFileSync(f).toString("latin1");
      } catch {
        return "";
      }
    })
    .join("\n");
}

describe("a group with members on three servers: one upload, each server gets only its own members", () => {
  let club: FederatedServer;
  let news: FederatedServer;
  let clinic: FederatedServer;
  let alice: SignalDevice;
  let dave: SignalDevice;
  let bob: SignalDevice;
  let carol: SignalDevice;
  let trustRoot: PublicKey;
  const distributionId = randomUUID();
  before(async () => {
    [club, news, clinic] = await Promise.all([federated(), federated(), federated()]);
    alice = await club.register("alice");
    dave = await club.register("dave");
    bob = await news.register("bob");
    carol = await clinic.register("carol");
    for (const [server, device] of [
      [club, dave],
      [news, bob],
      [clinic, carol],
    ] as const) {
      await uploadKeys(server, device);
    }
    await startSession(club, alice, dave);
    for (const [server, device] of [
      [news, bob],
      [clinic, carol],
    ] as const) {
      const bundle = await club
        .http()
        .get(`/v1/federation/${server.name}/keys/${device.uuid}/*`)
        .set("authorization", alice.authHeader);
      assert.equal(bundle.status, 200);
      await alice.processBundle(device.uuid, bundle.body);
    }
    // Alice's sender key reaches each member (in a real client: inside a 1:1 message).
    const distribution = await alice.senderKeyDistribution(distributionId);
    for (const member of [dave, bob, carol]) await member.processSenderKeyDistribution(alice.uuid, 1, distribution);
    trustRoot = PublicKey.deserialize(
      Buffer.from((await club.http().get("/v1/certificate/trust-root")).body.publicKey, "base64"),
    );
  });
  after(async () => {
    await Promise.all([club, news, clinic].map((s) => s?.stop()));
  });

  const groupSend = async (members: SignalDevice[], text: string, remote: { uuid: string; server: string }[]) => {
    const message = await alice.sealedMultiEncrypt(
      members.map((m) => m.address),
      distributionId,
      text,
      await certificateFor(club, alice),
    );
    return club
      .http()
      .put("/v1/messages/multi-recipient")
      .set("authorization", alice.authHeader)
      .send({ message: Buffer.from(message).toString("base64"), remoteRecipients: remote });
  };

  it("delivers to every member; sealed envelopes carry no sender; no server learns the members elsewhere", async () => {
    const res = await groupSend([dave, bob, carol], "hello group", [
      { uuid: bob.uuid, server: news.name },
      { uuid: carol.uuid, server: clinic.name },
    ]);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(
      res.body.recipients.map((r: { uuid: string }) => r.uuid),
      [dave.uuid],
      "club committed its own member",
    );
    assert.deepEqual(
      res.body.remote.map((r: { uuid: string; status: number; queued: boolean }) => [r.uuid, r.status, r.queued]),
      [
        [bob.uuid, 200, false],
        [carol.uuid, 200, false],
      ],
    );
    for (const [server, member] of [
      [club, dave],
      [news, bob],
      [clinic, carol],
    ] as const) {
      const got = await inbox(server, member);
      assert.equal(got.length, 1, `${server.name} holds one envelope for its member`);
      assert.equal(got[0]!.type, "sealed");
      assert.equal(got[0]!.sourceUuid, undefined, "no sender on a sealed envelope");
      const opened = await member.sealedGroupDecrypt(got[0]!.content, trustRoot);
      assert.equal(opened.plaintext, "hello group");
      assert.equal(opened.senderUuid, alice.uuid);
    }
    if (testProvider === "sqlite") {
      // Nothing on news's disk names clinic's member or club's other member, and the other way round.
      const onNews = diskText(news);
      const onClinic = diskText(clinic);
      for (const [text, stranger] of [
        [onNews, carol],
        [onNews, dave],
        [onClinic, bob],
        [onClinic, dave],
      ] as const) {
        assert.ok(!text.includes(stranger.uuid), "a server holds no member of another server");
      }
      assert.ok(onNews.includes(bob.uuid), "sanity: news's own member is on its disk");
    }
  });

  it("removal: a member left out of the next send gets nothing; a stale remote device is that recipient's refusal only", async () => {
    const res = await groupSend([dave, bob], "carol is gone", [{ uuid: bob.uuid, server: news.name }]);
    assert.equal(res.status, 200);
    assert.equal((await inbox(clinic, carol)).length, 0, "carol's server got nothing");
    assert.equal((await inbox(news, bob)).length, 1);
    assert.equal((await inbox(club, dave)).length, 1);

    // Bob linked a second device meanwhile: alice's next message misses it. News refuses bob's copy only.
    await linkDevice(news, bob);
    const message = await alice.sealedMultiEncrypt(
      [dave.address, bob.address],
      distributionId,
      "again",
      await certificateFor(club, alice),
    );
    const refused = await club
      .http()
      .put("/v1/messages/multi-recipient")
      .set("authorization", alice.authHeader)
      .send({
        message: Buffer.from(message).toString("base64"),
        remoteRecipients: [{ uuid: bob.uuid, server: news.name }],
      });
    assert.equal(refused.status, 200, JSON.stringify(refused.body));
    const [bobResult] = refused.body.remote;
    assert.equal(bobResult.status, 409);
    assert.equal(bobResult.error.code, "mismatched_devices");
    assert.deepEqual(bobResult.error.missingDevices, [2]);
    assert.deepEqual(await inbox(news, bob), [], "nothing stored for bob");
    assert.equal((await inbox(club, dave)).length, 1, "the local member's copy was committed");
  });

  it("without credentials: each remote member's access key is checked by its own server only", async () => {
    const [daveKey, carolKey] = [await setAccess(club, dave), await setAccess(clinic, carol)];
    const message = await alice.sealedMultiEncrypt(
      [dave.address, carol.address],
      distributionId,
      "sealed to all",
      await certificateFor(club, alice),
    );
    const send = (carolAccess: Buffer) =>
      club
        .http()
        .put("/v1/messages/multi-recipient")
        .send({
          message: Buffer.from(message).toString("base64"),
          accessKeys: [
            { uuid: dave.uuid, accessKey: daveKey.toString("base64") },
            { uuid: carol.uuid, accessKey: carolAccess.toString("base64") },
          ],
          remoteRecipients: [{ uuid: carol.uuid, server: clinic.name }],
        });
    const wrong = await send(randomBytes(16));
    assert.equal(wrong.status, 200, JSON.stringify(wrong.body));
    assert.equal(wrong.body.remote[0].status, 401, "clinic refused the wrong key");
    assert.equal((await inbox(clinic, carol)).length, 0);
    assert.equal((await inbox(club, dave)).length, 1, "club checked dave's key and stored his copy");
    const right = await send(carolKey);
    assert.equal(right.body.remote[0].status, 200);
    const [got] = await inbox(clinic, carol);
    assert.equal((await carol.sealedGroupDecrypt(got!.content, trustRoot)).plaintext, "sealed to all");
    await inbox(club, dave);
  });
});
