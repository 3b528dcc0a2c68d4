import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { FederationPeerList } from "@zimchat/protocol";
import type { SignalDevice } from "@zimchat/testing/signal";
import { federatedPair, freePort, type FederatedPair, type FederatedServer } from "../support/federation.js";
import { encryptFor } from "../support/harness.js";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));

/** The real `zimchat admin` CLI against a server. */
async function cli(server: FederatedServer, token: string, ...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [bin, "admin", ...args], {
    env: { ...process.env, ZIMCHAT_URL: server.url, ZIMCHAT_ADMIN_TOKEN: token },
  });
  return stdout;
}

describe("admin: federation peers (list, block, unblock) through the API and the CLI", () => {
  const token = randomBytes(24).toString("base64url");
  let pair: FederatedPair;
  let club: FederatedServer;
  let news: FederatedServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  before(async () => {
    pair = await federatedPair({ club: { adminToken: token } });
    ({ club, news, alice, bob } = pair);
  });
  after(async () => pair.stop());

  const send = async (server: string, text: string) => {
    const messages = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      text,
    );
    return club
      .http()
      .put(`/v1/federation/${server}/messages/${bob.uuid}`)
      .set("authorization", alice.authHeader)
      .send({ messages });
  };

  it("lists the servers relayed to with their outbox depth and backoff", async () => {
    const bundle = await club
      .http()
      .get(`/v1/federation/${news.name}/keys/${bob.uuid}/*`)
      .set("authorization", alice.authHeader);
    await alice.processBundle(bob.uuid, bundle.body);
    assert.equal((await send(news.name, "hi")).body.queued, false);
    const down = `127.0.0.1:${await freePort()}`;
    assert.equal((await send(down, "lost?")).body.queued, true);

    const listed = await club.http().get("/admin/v1/federation/peers").set("authorization", `Bearer ${token}`);
    assert.equal(listed.status, 200);
    const peers = (listed.body as FederationPeerList).peers;
    const byName = new Map(peers.map((p) => [p.server, p]));
    assert.equal(byName.get(down)?.pending, 1);
    assert.equal(byName.get(down)?.failures, 1);
    assert.ok((byName.get(down)?.nextAttemptAt ?? 0) > Date.now(), "backing off");
    assert.equal(byName.get(down)?.blocked, false);
    const printed = await cli(club, token, "peers");
    assert.match(printed, new RegExp(`${down.replace(".", "\\.")}  pending 1  retry in \\d+ s \\(1 failures\\)`));
    const asJson = JSON.parse(await cli(club, token, "peers", "--json")) as FederationPeerList;
    assert.equal(asJson.peers.find((p) => p.server === down)?.pending, 1);
  });

  it("a blocked server is refused both ways until it is unblocked", async () => {
    assert.match(await cli(club, token, "peer", "block", news.name), /^blocked /);
    const refused = await send(news.name, "blocked?");
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, "peer_not_allowed");
    const inbound = await news.home.services.federation.request(
      club.name,
      "GET",
      "/federation/v1/accounts/username/alice",
    );
    assert.equal(inbound.status, 403, "news's requests are refused by club");
    const listed = JSON.parse(await cli(club, token, "peers", "--json")) as FederationPeerList;
    assert.equal(listed.peers.find((p) => p.server === news.name)?.blocked, true);

    assert.match(await cli(club, token, "peer", "unblock", news.name), /^unblocked /);
    assert.equal((await send(news.name, "back")).body.queued, false);
    const envelopes = (await news.http().get("/v1/messages").set("authorization", bob.authHeader)).body.envelopes;
    assert.deepEqual(
      await Promise.all(
        envelopes.map((e: { type: "prekey"; content: string }) => bob.decrypt(alice.uuid, 1, e.type, e.content)),
      ),
      ["hi", "back"],
      "nothing was relayed while blocked",
    );
  });
});
