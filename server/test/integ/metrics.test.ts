import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { defaultRateLimits } from "../../src/config.js";
import { encryptFor, startServer, startSession, type TestServer } from "../support/harness.js";

/** The value of one sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, line: string): number | undefined {
  const found = text.split("\n").find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

async function scrape(server: TestServer, token?: string): Promise<string> {
  const req = server.http().get("/metrics");
  const res = await (token ? req.set("Authorization", `Bearer ${token}`) : req);
  assert.equal(res.status, 200, res.text);
  assert.match(String(res.headers["content-type"]), /^text\/plain/);
  return res.text;
}

describe("GET /metrics", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({
      rateLimits: { ...defaultRateLimits, usernameLookup: { points: 1, durationSeconds: 600 } },
    });
  });
  after(async () => server.stop());

  it("counts accepted, delivered and expired envelopes, queue depth, connections and refusals, without user labels", async () => {
    const usernames = [`metrics_alice_${process.pid}`, `metrics_bob_${process.pid}`];
    const alice = await server.register(usernames[0]);
    const bob = await server.register(usernames[1]);
    await startSession(server, alice, bob);
    const before = await scrape(server);
    assert.equal(sample(before, "zimchat_envelopes_accepted_total"), 0);
    assert.equal(sample(before, "zimchat_queue_depth"), 0);
    assert.equal(sample(before, "zimchat_connected_devices"), 0);
    assert.ok(sample(before, "zimchat_process_resident_memory_bytes")! > 0, "default process metrics");

    for (const text of ["one", "two"]) {
      const messages = await encryptFor(
        alice,
        { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
        text,
      );
      const res = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    const socket = await server.connect(bob);
    await socket.queueEmpty;
    const sent = await scrape(server);
    assert.equal(sample(sent, "zimchat_envelopes_accepted_total"), 2);
    assert.equal(sample(sent, "zimchat_queue_depth"), 2);
    assert.equal(sample(sent, "zimchat_connected_devices"), 1);

    const acked = await socket.socket.emitWithAck("ack", { ids: [socket.received[0]!.id] });
    assert.deepEqual(acked, { ok: true, value: { deleted: 1 } });
    // Acknowledging the same id again deletes nothing and counts nothing.
    await socket.socket.emitWithAck("ack", { ids: [socket.received[0]!.id] });
    const delivered = await scrape(server);
    assert.equal(sample(delivered, "zimchat_envelopes_delivered_total"), 1);
    assert.equal(sample(delivered, 'zimchat_socket_event_duration_seconds_count{event="ack"}'), 2);
    assert.equal(sample(delivered, "zimchat_envelopes_expired_total"), 0);

    // Two lookups against a limit of one: one refusal, labelled by the limit's name only.
    const lookups = [];
    for (let i = 0; i < 2; i++)
      lookups.push(
        (await server.http().get(`/v1/accounts/username/${usernames[1]}`).set("Authorization", alice.authHeader))
          .status,
      );
    assert.deepEqual(lookups, [200, 429]);

    const text = await scrape(server);
    assert.equal(sample(text, 'zimchat_rate_limit_refusals_total{limit="usernameLookup"}'), 1);
    assert.ok(
      sample(
        text,
        'zimchat_http_request_duration_seconds_count{route="/v1/messages/:uuid",method="PUT",status="2xx"}',
      ) === 2,
      text,
    );
    assert.equal(
      sample(
        text,
        'zimchat_http_request_duration_seconds_count{route="/v1/accounts/username/:username",method="GET",status="4xx"}',
      ),
      1,
    );
    assert.equal(
      sample(text, 'zimchat_http_request_duration_seconds_count{route="/v1/accounts",method="POST",status="2xx"}'),
      2,
    );
    for (const secret of [...usernames, alice.uuid, bob.uuid, "127.0.0.1"])
      assert.ok(!text.includes(secret), `metrics mention ${secret}`);

    socket.close();
    await waitUntil(async () => sample(await scrape(server), "zimchat_connected_devices") === 0);
  });

  it("labels an unknown path as unmatched, not by its raw path", async () => {
    const res = await server.http().get(`/no/such/path-${process.pid}`);
    assert.equal(res.status, 404);
    const text = await scrape(server);
    assert.ok(!text.includes(`path-${process.pid}`));
    assert.ok(
      sample(text, 'zimchat_http_request_duration_seconds_count{route="unmatched",method="GET",status="4xx"}')! >= 1,
    );
  });
});

describe("GET /metrics, expiry", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ envelopeTtlMs: 1 });
  });
  after(async () => server.stop());

  it("counts envelopes deleted unread by the expiry sweep", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const messages = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "gone soon",
    );
    const res = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({ messages });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(await server.home.services.mailbox.sweepExpired(), 1);
    const text = await scrape(server);
    assert.equal(sample(text, "zimchat_envelopes_expired_total"), 1);
    assert.equal(sample(text, "zimchat_envelopes_delivered_total"), 0);
  });
});

describe("GET /metrics, token and off", () => {
  const token = "metrics-token-0123456789abcdef";
  let guarded: TestServer;
  let off: TestServer;
  before(async () => {
    guarded = await startServer({ metricsToken: token });
    off = await startServer({ metrics: false });
  });
  after(async () => Promise.all([guarded.stop(), off.stop()]));

  it("needs the bearer token when one is set", async () => {
    const missing = await guarded.http().get("/metrics");
    assert.equal(missing.status, 401);
    assert.equal(missing.body.code, "unauthorized");
    const wrong = await guarded
      .http()
      .get("/metrics")
      .set("Authorization", `Bearer ${token.slice(0, -1)}x`);
    assert.equal(wrong.status, 401);
    assert.ok(!JSON.stringify(wrong.body).includes(token));
    assert.match(await scrape(guarded, token), /zimchat_envelopes_accepted_total 0/);
  });

  it("is a 404 when metrics are off", async () => {
    const res = await off.http().get("/metrics");
    assert.equal(res.status, 404);
    assert.equal(res.body.code, "not_found");
  });
});

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
