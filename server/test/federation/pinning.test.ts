import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { serverDocumentPath, type Envelope, type FederationPeerList } from "@zimchat/protocol";
import type { SignalDevice } from "@zimchat/testing/signal";
import { identityFingerprint } from "../../src/federation/signing-keys.js";
import { federated, pinnedPair, type FederatedServer, type PinnedPair } from "../support/federation.js";
import { encryptFor } from "../support/harness.js";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));

async function inbox(server: FederatedServer, device: SignalDevice): Promise<Envelope[]> {
  const res = await server.http().get("/v1/messages").set("authorization", device.authHeader);
  assert.equal(res.status, 200);
  return res.body.envelopes as Envelope[];
}

async function metric(server: FederatedServer, line: string): Promise<number> {
  const text = (await server.http().get("/metrics")).text;
  const found = text.split("\n").find((l) => l.startsWith(line + " "));
  return found ? Number(found.slice(line.length + 1)) : 0;
}

async function peers(server: FederatedServer, token: string): Promise<FederationPeerList["peers"]> {
  const res = await server.http().get("/admin/v1/federation/peers").set("authorization", `Bearer ${token}`);
  assert.equal(res.status, 200);
  return (res.body as FederationPeerList).peers;
}

/**
 * Messages from `from` to `to` (an account on `peer`), on a session started from a bundle `peer` gave its own
 * user `helper`: a send that would be accepted, built without federation.
 */
async function encryptedSend(peer: FederatedServer, helper: SignalDevice, from: SignalDevice, to: SignalDevice) {
  const bundle = await peer.http().get(`/v1/keys/${to.uuid}/*`).set("authorization", helper.authHeader);
  assert.equal(bundle.status, 200, JSON.stringify(bundle.body));
  await from.processBundle(to.uuid, bundle.body);
  return encryptFor(from, { uuid: to.uuid, devices: [{ deviceId: 1, registrationId: to.registrationId }] }, "pinned?");
}

/** `from` sends `to` (a user of `toServer`) a relayed message through its own server; answered 200. */
async function relay(
  fromServer: FederatedServer,
  toServer: FederatedServer,
  from: SignalDevice,
  to: SignalDevice,
  messages: unknown,
): Promise<{ body: { queued: boolean } }> {
  const sent = await fromServer
    .http()
    .put(`/v1/federation/${toServer.name}/messages/${to.uuid}`)
    .set("authorization", from.authHeader)
    .send({ messages });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  return sent;
}

describe("federation allowlist pinned by identity-key fingerprint", () => {
  const token = randomBytes(24).toString("base64url");

  describe("both servers pin each other's real fingerprint", () => {
    let pair: PinnedPair;
    before(async () => {
      pair = await pinnedPair({ club: "right", news: "right" }, { club: { adminToken: token } });
    });
    after(async () => pair.stop());

    it("the fingerprint pinned is the one the document's identity key gives", async () => {
      const document = (await pair.news.http().get(serverDocumentPath)).body as { identityKey: string };
      assert.equal(identityFingerprint(Buffer.from(document.identityKey, "base64")), pair.fingerprints.news);
    });

    it("a relayed send is delivered, and the admin peer row shows the pin and the fingerprint seen", async () => {
      const { club, news, alice, bob } = pair;
      const bundle = await club
        .http()
        .get(`/v1/federation/${news.name}/keys/${bob.uuid}/*`)
        .set("authorization", alice.authHeader);
      assert.equal(bundle.status, 200, JSON.stringify(bundle.body));
      await alice.processBundle(bob.uuid, bundle.body);
      const messages = await encryptFor(
        alice,
        { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
        "hi bob, pinned",
      );
      const sent = await relay(club, news, alice, bob, messages);
      assert.equal(sent.body.queued, false);
      const got = await inbox(news, bob);
      assert.equal(got.length, 1);
      assert.equal(got[0]!.sourceServer, club.name);
      assert.equal(await bob.decrypt(alice.uuid, 1, got[0]!.type, got[0]!.content), "hi bob, pinned");

      const row = (await peers(club, token)).find((p) => p.server === news.name);
      assert.deepEqual(
        { pinned: row?.pinned, fingerprint: row?.fingerprint, pending: row?.pending },
        { pinned: true, fingerprint: pair.fingerprints.news, pending: 0 },
      );
      assert.equal(await metric(club, 'zimchat_federation_document_fetches_total{result="pin_mismatch"}'), 0);
    });
  });

  describe("club pins a wrong fingerprint for news (news pins club rightly)", () => {
    let pair: PinnedPair;
    let carol: SignalDevice;
    const logs: string[] = [];
    before(async () => {
      pair = await pinnedPair(
        { club: "wrong", news: "right" },
        { club: { adminToken: token, logLevel: "warn" } },
        { club: logs },
      );
      carol = await pair.club.register("carol");
    });
    after(async () => pair.stop());

    it("news's signed requests are refused 401 unknown_key, and nothing is stored on club", async () => {
      const { club, news, alice, bob } = pair;
      const messages = await encryptedSend(club, carol, bob, alice);
      const send = {
        id: randomUUID(),
        destination: alice.uuid,
        source: { uuid: bob.uuid, deviceId: 1 },
        messages,
      };
      const answer = await news.home.services.federation.request(
        club.name,
        "PUT",
        `/federation/v1/send/${randomUUID()}`,
        {
          sends: [send],
        },
      );
      assert.equal(answer.status, 401, JSON.stringify(answer.body));
      assert.deepEqual(
        { code: (answer.body as { code?: string }).code, reason: (answer.body as { reason?: string }).reason },
        { code: "federation_unauthorized", reason: "unknown_key" },
      );
      const lookup = await news.home.services.federation.request(
        club.name,
        "GET",
        "/federation/v1/accounts/username/alice",
      );
      assert.equal(lookup.status, 401);
      assert.deepEqual(await inbox(club, alice), [], "nothing stored for alice");
      assert.equal(await club.home.database.prisma.envelope.count(), 0, "no envelope in club's database");
      assert.ok((await metric(club, 'zimchat_federation_document_fetches_total{result="pin_mismatch"}')) >= 1);
      assert.equal(await metric(club, 'zimchat_federation_document_fetches_total{result="ok"}'), 0);
    });

    it("club sends news nothing: a look-up is 502 peer_unavailable, a send waits in the outbox with backoff", async () => {
      const { club, news, alice, bob } = pair;
      const lookup = await club
        .http()
        .get(`/v1/federation/${news.name}/accounts/username/bob`)
        .set("authorization", alice.authHeader);
      assert.equal(lookup.status, 502);
      assert.equal(lookup.body.code, "peer_unavailable");
      const document = await club
        .http()
        .get(`/v1/federation/${news.name}/document`)
        .set("authorization", alice.authHeader);
      assert.equal(document.status, 502);
      assert.equal(document.body.code, "peer_unavailable");

      const helper = await news.register("dave");
      const messages = await encryptedSend(news, helper, alice, bob);
      const sent = await relay(club, news, alice, bob, messages);
      assert.equal(sent.body.queued, true);
      assert.deepEqual(await inbox(news, bob), [], "nothing reached news");
      assert.equal(
        await metric(news, 'zimchat_federation_inbound_requests_total{result="accepted"}'),
        0,
        "news never got a request from club",
      );

      const row = (await peers(club, token)).find((p) => p.server === news.name);
      assert.equal(row?.pinned, true);
      assert.equal(row?.fingerprint, pair.fingerprints.news, "the fingerprint news presented");
      assert.equal(row?.pending, 1);
      assert.ok((row?.failures ?? 0) >= 1 && (row?.nextAttemptAt ?? 0) > Date.now(), "backing off");
      const { stdout } = await promisify(execFile)(process.execPath, [bin, "admin", "peers"], {
        env: { ...process.env, ZIMCHAT_URL: club.url, ZIMCHAT_ADMIN_TOKEN: token },
      });
      assert.match(stdout, new RegExp(`^${news.name.replace(/\./g, "\\.")} .* pinned ${pair.fingerprints.news}$`, "m"));
      const asJson = await promisify(execFile)(process.execPath, [bin, "admin", "peers", "--json"], {
        env: { ...process.env, ZIMCHAT_URL: club.url, ZIMCHAT_ADMIN_TOKEN: token },
      });
      const listed = (JSON.parse(asJson.stdout) as FederationPeerList).peers.find((p) => p.server === news.name);
      assert.deepEqual(
        { pinned: listed?.pinned, fingerprint: listed?.fingerprint },
        {
          pinned: true,
          fingerprint: pair.fingerprints.news,
        },
      );
    });

    it("logs the mismatch once at warn, with the fingerprints and no secret", async () => {
      // Another request from news: club's answer comes from its cache of the refusal, and nothing is logged again.
      await pair.news.home.services.federation.request(pair.club.name, "GET", "/federation/v1/accounts/username/x");
      const warnings = logs
        .map(
          (line) => JSON.parse(line) as { level: number; msg: string; peer?: string; pinned?: string; seen?: string },
        )
        .filter((l) => /pinned federation peer/.test(l.msg));
      assert.equal(warnings.length, 1, logs.join("\n"));
      assert.equal(warnings[0]!.level, 40);
      assert.equal(warnings[0]!.peer, pair.news.name);
      assert.equal(warnings[0]!.seen, pair.fingerprints.news);
      assert.notEqual(warnings[0]!.pinned, pair.fingerprints.news);
      assert.ok(!logs.join("\n").includes(token), "no admin token in the logs");
    });
  });

  it("in open mode a pinned server must present its pinned identity key; other servers are accepted as before", async () => {
    const [wrong, right, unpinned] = await Promise.all([federated(), federated(), federated()]);
    const fingerprintOf = async (server: FederatedServer): Promise<string> =>
      identityFingerprint(Buffer.from((await server.http().get(serverDocumentPath)).body.identityKey, "base64"));
    const open = await federated({
      federationPins: {
        [wrong.name]: await fingerprintOf(right),
        [right.name]: await fingerprintOf(right),
      },
    });
    try {
      assert.equal(open.config.federation, "open");
      const ask = (from: FederatedServer) =>
        from.home.services.federation.request(open.name, "GET", "/federation/v1/accounts/username/nobody");
      const refused = await ask(wrong);
      assert.equal(refused.status, 401);
      assert.equal((refused.body as { reason?: string }).reason, "unknown_key");
      for (const from of [right, unpinned]) {
        const answer = await ask(from);
        assert.equal(answer.status, 404, from.name);
        assert.equal((answer.body as { code?: string }).code, "not_found");
      }
    } finally {
      await Promise.all([wrong, right, unpinned, open].map((s) => s.stop()));
    }
  });
});
