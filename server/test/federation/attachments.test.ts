import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { SignalDevice } from "@zimchat/testing/signal";
import { defaultRateLimits } from "../../src/config.js";
import { federated, type FederatedServer } from "../support/federation.js";

describe("attachments across servers: a user downloads a blob stored on the sender's server through their own", () => {
  let club: FederatedServer;
  let news: FederatedServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  const blob = randomBytes(300_000);
  let id: string;
  before(async () => {
    club = await federated({
      rateLimits: { ...defaultRateLimits, federationAttachmentDownload: { points: 4, durationSeconds: 3600 } },
    });
    news = await federated();
    alice = await club.register("alice");
    bob = await news.register("bob");
    const uploaded = await fetch(`${club.url}/v1/attachments`, {
      method: "POST",
      headers: { authorization: alice.authHeader, "content-type": "application/octet-stream" },
      body: blob,
    });
    assert.equal(uploaded.status, 201);
    id = ((await uploaded.json()) as { id: string }).id;
  });
  after(async () => {
    await club.stop();
    await news.stop();
  });

  const remote = (attachment: string, headers: Record<string, string> = {}) =>
    fetch(`${news.url}/v1/federation/${club.name}/attachments/${attachment}`, {
      headers: { authorization: bob.authHeader, ...headers },
    });

  it("streams the whole blob, and one range of it, byte for byte", async () => {
    const whole = await remote(id);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get("content-type"), "application/octet-stream");
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(blob));
    const part = await remote(id, { range: "bytes=1000-1999" });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), `bytes 1000-1999/${blob.length}`);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(blob.subarray(1000, 2000)));
  });

  it("answers club's 404 and 416 as its own, and refuses a peer's download without a signature", async () => {
    const other = id.slice(0, -1) + (id.endsWith("A") ? "B" : "A");
    const missing = await remote(other);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { code: string }).code, "not_found");
    const outside = await remote(id, { range: `bytes=${blob.length + 10}-` });
    assert.equal(outside.status, 416);
    const unsigned = await fetch(`${club.url}/federation/v1/attachments/${id}`);
    assert.equal(unsigned.status, 401);
    assert.equal(((await unsigned.json()) as { reason: string }).reason, "unsigned");
    const noCredentials = await fetch(`${news.url}/v1/federation/${club.name}/attachments/${id}`);
    assert.equal(noCredentials.status, 401);
  });

  it("club limits what news may download for its users: 429, and alice still downloads locally", async () => {
    // Four downloads of club's budget for news went to the tests above.
    const limited = await remote(id);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get("retry-after"), "60");
    const local = await fetch(`${club.url}/v1/attachments/${id}`, { headers: { authorization: alice.authHeader } });
    assert.equal(local.status, 200);
    assert.ok(Buffer.from(await local.arrayBuffer()).equals(blob));
  });
});
