import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { defaultRateLimits } from "../../src/config.js";
import type { SignalDevice } from "@zimchat/testing/signal";
import { federated, federatedPair, freePort, type FederatedPair, type FederatedServer } from "../support/federation.js";

describe("remote accounts and key bundles through the home server", () => {
  let pair: FederatedPair;
  let club: FederatedServer;
  let news: FederatedServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  before(async () => {
    pair = await federatedPair({
      news: { rateLimits: { ...defaultRateLimits, federationPreKeyClaims: { points: 2, durationSeconds: 3600 } } },
    });
    ({ club, news, alice, bob } = pair);
  });
  after(async () => pair.stop());

  const remote = (path: string) => club.http().get(path).set("authorization", alice.authHeader);

  it("resolves bob@news and fetches his bundle through club; a session from it decrypts on bob's side", async () => {
    const lookup = await remote(`/v1/federation/${news.name}/accounts/username/bob`);
    assert.equal(lookup.status, 200);
    assert.equal(lookup.body.uuid, bob.uuid);
    const before = (await news.http().get("/v1/keys/count").set("authorization", bob.authHeader)).body;
    const bundle = await remote(`/v1/federation/${news.name}/keys/${bob.uuid}/*`);
    assert.equal(bundle.status, 200);
    assert.equal(bundle.body.devices.length, 1);
    assert.ok(bundle.body.devices[0].preKey, "a one-time EC key, claimed on news");
    const afterClaim = (await news.http().get("/v1/keys/count").set("authorization", bob.authHeader)).body;
    assert.equal(afterClaim.ecCount, before.ecCount - 1, "news claimed the one-time EC key, as for a local fetch");
    assert.equal(afterClaim.pqCount, before.pqCount - 1, "and a one-time Kyber key");
    // Real keys: alice's PQXDH session from the remote bundle makes a message bob decrypts.
    await alice.processBundle(bob.uuid, bundle.body);
    const message = await alice.encrypt(bob.uuid, 1, "hello across servers");
    assert.equal(message.type, "prekey");
    assert.equal(await bob.decrypt(alice.uuid, alice.deviceId, message.type, message.content), "hello across servers");
  });

  it("gives a peer server only its own one-time key budget (then last-resort keys), and local users keep theirs", async () => {
    let last = (await remote(`/v1/federation/${news.name}/keys/${bob.uuid}/1`)).body;
    for (let i = 0; i < 3; i++) last = (await remote(`/v1/federation/${news.name}/keys/${bob.uuid}/1`)).body;
    assert.equal(last.devices[0].preKey, null, "club's budget on news is spent: no one-time EC key");
    assert.ok(last.devices[0].pqPreKey, "still a working bundle (the last-resort Kyber key)");
    const carol = await news.register("carol");
    const local = await news.http().get(`/v1/keys/${bob.uuid}/1`).set("authorization", carol.authHeader);
    assert.equal(local.status, 200);
    assert.ok(local.body.devices[0].preKey, "a local user still gets a one-time key");
  });

  it("answers 404 for an unknown remote account, 502 for an unreachable server, 403 for one not accepted", async () => {
    const missing = await remote(`/v1/federation/${news.name}/accounts/username/nobody`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, "not_found");
    const down = await remote(`/v1/federation/127.0.0.1:${await freePort()}/accounts/username/bob`);
    assert.equal(down.status, 502);
    assert.equal(down.body.code, "peer_unavailable");
    const closed = await federated({ federation: "allowlist", federationAllow: [] });
    try {
      const refused = await closed
        .http()
        .get(`/v1/federation/${news.name}/accounts/username/bob`)
        .set("authorization", (await closed.register("dave")).authHeader);
      assert.equal(refused.status, 403);
      assert.equal(refused.body.code, "peer_not_allowed");
    } finally {
      await closed.stop();
    }
    const self = await remote(`/v1/federation/${club.name}/accounts/username/alice`);
    assert.equal(self.status, 400);
  });

  it("hands a user another server's verified document: the trust root of that server's users", async () => {
    const res = await remote(`/v1/federation/${news.name}/document`);
    assert.equal(res.status, 200);
    const own = await news.http().get("/.well-known/zimchat/server");
    assert.equal(res.body.server, news.name);
    assert.equal(res.body.trustRoot, own.body.trustRoot, "news's own trust root");
    assert.deepEqual(res.body.keys, own.body.keys);
    const down = await remote(`/v1/federation/127.0.0.1:${await freePort()}/document`);
    assert.equal(down.status, 502);
    assert.equal(down.body.code, "peer_unavailable");
  });
});
