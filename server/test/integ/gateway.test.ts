import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { encryptFor, roomyRateLimits, startServer, startSession, type TestServer } from "../support/harness.js";

describe("Socket.IO gateway", () => {
  let server: TestServer;
  before(async () => {
    // Sends in a tight loop: a send limit it cannot reach (the default is tested elsewhere).
    server = await startServer({ rateLimits: { ...roomyRateLimits, send: { points: 100_000, durationSeconds: 1 } } });
  });
  after(async () => server.stop());

  it("displaces an older connection of the same device and delivers to the newest", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const old = await server.connect(bob);
    await old.queueEmpty;
    const closing = new Promise<string>((resolve) => old.socket.once("closing", resolve));
    const disconnected = new Promise<void>((resolve) => old.socket.once("disconnect", () => resolve()));
    const current = await server.connect(bob);
    await current.queueEmpty;
    assert.equal(await closing, "displaced");
    await disconnected;

    const messages = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "to the newest",
    );
    const res = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({ messages });
    assert.equal(res.status, 200);
    const [envelope] = await current.waitFor(1);
    assert.equal(envelope?.id, res.body.envelopes[0].id);
    assert.equal(old.received.length, 0);
    current.close();
  });

  it("drains a long queue in order, in batches, then signals queue-empty", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const ids: string[] = [];
    for (let i = 0; i < 230; i++) {
      const messages = await encryptFor(
        alice,
        { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
        `m${i}`,
      );
      const res = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      ids.push(res.body.envelopes[0].id);
    }
    const batches: number[] = [];
    const conn = await server.connect(bob);
    conn.socket.on("envelopes", (batch) => batches.push(batch.length));
    await conn.queueEmpty;
    assert.deepEqual(
      conn.received.map((e) => e.id),
      ids,
    );
    assert.ok(
      batches.every((n) => n <= 100),
      `batches of at most 100, got ${batches.join(",")}`,
    );
    // Received out of order or not, every message decrypts (libsignal keeps skipped keys).
    for (const e of conn.received.slice().reverse())
      assert.match(await bob.decrypt(alice.uuid, 1, e.type, e.content), /^m\d+$/);
    // Batched acknowledgement.
    const acked = await conn.socket.emitWithAck("ack", { ids });
    assert.deepEqual(acked, { ok: true, value: { deleted: 230 } });
    const again = await conn.socket.emitWithAck("ack", { ids: ids.slice(0, 5) });
    assert.deepEqual(again, { ok: true, value: { deleted: 0 } }, "acks are idempotent");
    conn.close();
  });

  it("envelopes sent during a drain arrive after the queued ones, not ahead of them", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const bobDevices = { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] };
    const send = async (text: string): Promise<string> => {
      const messages = await encryptFor(alice, bobDevices, text);
      const res = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      return res.body.envelopes[0].id as string;
    };
    const queued: string[] = [];
    for (let i = 0; i < 150; i++) queued.push(await send(`queued ${i}`));

    // A slow client: it confirms each drained batch after 150 ms, and Alice sends meanwhile.
    const { io } = await import("socket.io-client");
    const socket = io(server.url, {
      auth: bob.socketAuth,
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
    const order: string[] = [];
    let sentDuring: Promise<string[]> | null = null;
    socket.on("envelopes", (batch, confirm) => {
      for (const e of batch) if (!order.includes(e.id)) order.push(e.id);
      // One after the other: concurrent sends may commit in any order, and the order of commits is what is checked.
      sentDuring ??= (async () => [await send("during 1"), await send("during 2"), await send("during 3")])();
      setTimeout(() => confirm?.(), 150);
    });
    await new Promise<void>((resolve) => socket.once("queue-empty", () => resolve()));
    const during = await sentDuring!;
    assert.deepEqual(order, [...queued, ...during]);
    socket.close();
  });

  it("a send to oneself must not name the sending device", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    // A genuine ciphertext (for Bob), addressed to Alice's own sending device.
    const [message] = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "x",
    );
    const selfSend = await server
      .http()
      .put(`/v1/messages/${alice.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({
        messages: [{ ...message, destinationRegistrationId: alice.registrationId }],
      });
    assert.equal(selfSend.status, 409);
    assert.deepEqual(selfSend.body.missingDevices, []);
    assert.deepEqual(selfSend.body.extraDevices, [1]);
    const queue = await server.http().get("/v1/messages").set("Authorization", alice.authHeader);
    assert.deepEqual(queue.body.envelopes, []);
  });

  it("refuses a connection without credentials", async () => {
    const { io } = await import("socket.io-client");
    const socket = io(server.url, { transports: ["websocket"], reconnection: false, forceNew: true });
    const error = await new Promise<Error & { data?: { code?: string } }>((resolve) =>
      socket.once("connect_error", resolve),
    );
    assert.equal(error.data?.code, "unauthorized");
    socket.close();
  });
});

describe("envelope expiry", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ envelopeTtlMs: 300, expirySweepMs: 100 });
  });
  after(async () => server.stop());

  it("deletes envelopes older than the TTL unread", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const messages = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "short-lived",
    );
    await server.http().put(`/v1/messages/${bob.uuid}`).set("Authorization", alice.authHeader).send({ messages });
    const before = await server.http().get("/v1/messages").set("Authorization", bob.authHeader);
    assert.equal(before.body.envelopes.length, 1);
    await new Promise((resolve) => setTimeout(resolve, 600));
    const count = await server.home.database.prisma.envelope.count();
    assert.equal(count, 0, "the sweep deleted the expired envelope");
    const afterwards = await server.http().get("/v1/messages").set("Authorization", bob.authHeader);
    assert.deepEqual(afterwards.body, { envelopes: [], more: false });
  });
});

describe("health, readiness, OpenAPI and shutdown", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server.stop());

  it("answers /healthz and /readyz", async () => {
    const health = await server.http().get("/healthz");
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: "ok" });
    const ready = await server.http().get("/readyz");
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { status: "ready", database: true, migrations: true });
  });

  it("documents every mounted route in /openapi.json", async () => {
    const res = await server.http().get("/openapi.json");
    assert.equal(res.status, 200);
    assert.equal(res.body.openapi, "3.1.0");
    const { routes } = await import("@zimchat/protocol");
    for (const route of Object.values(routes)) {
      const path = route.path.replace(/:([A-Za-z]+)/g, "{$1}");
      const operation = res.body.paths[path]?.[route.method];
      assert.ok(operation, `${route.method} ${path} is documented`);
      assert.ok(operation.responses[String(route.success.status)], `${route.method} ${path} documents its success`);
    }
    // Every $ref resolves.
    const refs = [...JSON.stringify(res.body).matchAll(/"#\/components\/schemas\/([A-Za-z]+)"/g)].map((m) => m[1]!);
    assert.ok(refs.length > 10);
    for (const ref of refs) assert.ok(res.body.components.schemas[ref], `${ref} resolves`);
    // The router serves exactly the documented routes: an undocumented path is a 404.
    const unknown = await server.http().get("/v1/not-a-route");
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, "not_found");
  });
});

describe("graceful shutdown", () => {
  it("answers a send that committed, tells sockets why, and closes", async () => {
    const server = await startServer();
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const conn = await server.connect(bob);
    await conn.queueEmpty;
    const closing = new Promise<string>((resolve) => conn.socket.once("closing", resolve));
    const messages = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "last words",
    );
    const sending = server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({ messages });
    // Let the request reach the server, then shut down while it is in flight.
    const sent = new Promise((resolve) => server.home.services.mailbox.onDelivery(resolve));
    const res = await Promise.race([sending, sent.then(() => sending)]);
    const shutdown = server.home.close();
    assert.equal(res.status, 200);
    assert.equal(await closing, "shutdown");
    await shutdown;
    await server.stop();
  });
});
