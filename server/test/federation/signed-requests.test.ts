import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { request } from "undici";
import { defaultRateLimits } from "../../src/config.js";
import { signRequest } from "../../src/federation/request-signing.js";
import { federated, type FederatedServer } from "../support/federation.js";
import { startServer } from "../support/harness.js";

const lookupPath = (username: string) => `/federation/v1/accounts/username/${username}`;

describe("signed requests between homeservers", () => {
  let club: FederatedServer;
  let news: FederatedServer;
  let bobId: string;
  before(async () => {
    club = await federated();
    news = await federated({
      rateLimits: { ...defaultRateLimits, federationUsernameLookup: { points: 4, durationSeconds: 60 } },
    });
    bobId = (await news.register("bob")).uuid;
  });
  after(async () => {
    await club.stop();
    await news.stop();
  });

  type Change = { key?: { id: string; privateKey: KeyObject }; destination?: string; at?: number };

  /** The headers of a GET of `path` on `target`, signed as club would sign it, with one thing changed. */
  function clubSigns(target: FederatedServer, path: string, change: Change = {}): Promise<Record<string, string>> {
    return signRequest(
      {
        method: "GET",
        url: `http://${target.name}${path}`,
        body: new Uint8Array(),
        origin: club.name,
        destination: change.destination ?? target.name,
      },
      change.key ?? club.home.services.federation.document.keys()[0]!,
      change.at,
    );
  }

  /** Sends a request to news signed as club would, with one thing changed. */
  async function toNews(path: string, change: Change) {
    const response = await request(`http://${news.name}${path}`, { headers: await clubSigns(news, path, change) });
    return { status: response.statusCode, body: (await response.body.json()) as { code?: string; reason?: string } };
  }

  it("answers a username lookup signed by a peer, fetching the peer's document to check the key", async () => {
    const found = await club.home.services.federation.request(news.name, "GET", lookupPath("bob"));
    assert.equal(found.status, 200);
    assert.deepEqual(found.body, { uuid: bobId });
    const missing = await club.home.services.federation.request(news.name, "GET", lookupPath("nobody"));
    assert.equal(missing.status, 404);
    assert.equal((missing.body as { code: string }).code, "not_found");
  });

  it("refuses a forged signature, an unknown key, another destination, an expired signature and an unsigned request", async () => {
    const realKeyId = club.home.services.federation.document.keys()[0]!.id;
    const forger = { id: realKeyId, privateKey: generateKeyPairSync("ed25519").privateKey };
    const stranger = { id: "ed25519:00112233aabbccdd", privateKey: generateKeyPairSync("ed25519").privateKey };
    const cases = [
      { what: "forged", answer: await toNews(lookupPath("bob"), { key: forger }), reason: "bad_signature" },
      { what: "unknown key", answer: await toNews(lookupPath("bob"), { key: stranger }), reason: "unknown_key" },
      {
        what: "wrong destination",
        answer: await toNews(lookupPath("bob"), { destination: "elsewhere.example" }),
        reason: "wrong_destination",
      },
      {
        what: "expired",
        answer: await toNews(lookupPath("bob"), { at: Date.now() - 10 * 60_000 }),
        reason: "bad_signature",
      },
    ];
    for (const c of cases) {
      assert.equal(c.answer.status, 401, c.what);
      assert.equal(c.answer.body.code, "federation_unauthorized", c.what);
      assert.equal(c.answer.body.reason, c.reason, c.what);
    }
    const unsigned = await news.http().get(lookupPath("bob"));
    assert.equal(unsigned.status, 401);
    assert.equal(unsigned.body.reason, "unsigned");
    // A signature over one path does not carry over to another.
    const signed = await clubSigns(news, lookupPath("bob"));
    const replayed = await news.http().get(lookupPath("alice")).set(signed);
    assert.equal(replayed.status, 401);
    assert.equal(replayed.body.reason, "bad_signature");
  });

  it("counts signed requests by result in /metrics (never a server name)", async () => {
    const metric = async (server: FederatedServer, name: string, result: string): Promise<number> => {
      const text = (await server.http().get("/metrics")).text;
      const line = text.split("\n").find((l) => l.startsWith(`${name}{result="${result}"}`));
      return line ? Number(line.split(" ").pop()) : 0;
    };
    const inbound = "zimchat_federation_inbound_requests_total";
    // From the tests above: lookups accepted; a forged, an expired and a replayed signature; the other refusals.
    assert.ok((await metric(news, inbound, "accepted")) >= 2);
    assert.equal(await metric(news, inbound, "bad_signature"), 3);
    for (const reason of ["unknown_key", "wrong_destination", "unsigned"]) {
      assert.equal(await metric(news, inbound, reason), 1, reason);
    }
    assert.equal(await metric(news, "zimchat_federation_document_fetches_total", "ok"), 1, "club's document, cached");
    assert.ok((await metric(club, "zimchat_federation_outbound_requests_total", "ok")) >= 1);
    assert.ok((await metric(club, "zimchat_federation_outbound_requests_total", "refused")) >= 1, "the 404");
    const text = (await news.http().get("/metrics")).text;
    assert.ok(!text.includes(club.name), "no server name in a label");
  });

  it("limits lookups per origin server: 429 with Retry-After, and other servers stay served", async () => {
    const third = await federated();
    try {
      let last = { status: 200, body: {} as unknown };
      for (let i = 0; i < 6 && last.status !== 429; i++) {
        last = await club.home.services.federation.request(news.name, "GET", lookupPath("bob"));
      }
      assert.equal(last.status, 429);
      assert.equal((last.body as { code: string }).code, "rate_limited");
      const other = await third.home.services.federation.request(news.name, "GET", lookupPath("bob"));
      assert.equal(other.status, 200, "another origin has its own budget");
    } finally {
      await third.stop();
    }
  });

  it("answers 403 to a server outside the allowlist or on the denylist, and 404 while federation is off", async () => {
    const closed = await federated({ federation: "allowlist", federationAllow: ["friends.example"] });
    const denying = await federated({ federationDeny: [club.name] });
    const off = await startServer();
    try {
      for (const target of [closed, denying]) {
        const answer = await club.home.services.federation.request(target.name, "GET", lookupPath("bob"));
        assert.equal(answer.status, 403);
        assert.equal((answer.body as { code: string }).code, "peer_not_allowed");
      }
      const offAnswer = await off.http().get(lookupPath("bob"));
      assert.equal(offAnswer.status, 404);
      await assert.rejects(
        off.home.services.federation.request(news.name, "GET", lookupPath("bob")),
        (e: Error & { code?: string }) => e.code === "peer_not_allowed",
      );
    } finally {
      await closed.stop();
      await denying.stop();
      await off.stop();
    }
  });

  it("without --federation-insecure-peers, does not fetch a document from a loopback address (SSRF guard)", async () => {
    const strict = await federated({ federationInsecurePeers: false });
    try {
      const headers = await clubSigns(strict, lookupPath("bob"));
      const answer = await strict.http().get(lookupPath("bob")).set(headers);
      assert.equal(answer.status, 401);
      assert.equal(answer.body.reason, "unknown_key", "club's document was never fetched from 127.0.0.1");
    } finally {
      await strict.stop();
    }
  });
});
