import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { encryptFor, startServer, startSession, type TestServer } from "../support/harness.js";

describe("offline delivery, end to end with libsignal", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server.stop());

  it("queues for an offline device, drains on connect, deletes only on ack", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);

    const texts = ["Hey, did you see the news about the bond notes?", "second", "third"];
    for (const text of texts) {
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
      assert.equal(res.body.envelopes.length, 1);
    }

    const first = await server.connect(bob);
    await first.queueEmpty;
    assert.equal(first.received.length, 3);
    const plaintexts = [];
    for (const e of first.received) {
      assert.equal(e.sourceUuid, alice.uuid);
      plaintexts.push(await bob.decrypt(alice.uuid, e.sourceDeviceId ?? 0, e.type, e.content));
    }
    assert.deepEqual(plaintexts, texts);

    // Acknowledge only the first: the other two come back on the next connection.
    const acked = await first.socket.emitWithAck("ack", { ids: [first.received[0]!.id] });
    assert.deepEqual(acked, { ok: true, value: { deleted: 1 } });
    first.close();

    const second = await server.connect(bob);
    await second.queueEmpty;
    assert.deepEqual(
      second.received.map((e) => e.id),
      first.received.slice(1).map((e) => e.id),
    );
    const res = await second.socket.emitWithAck("ack", { ids: second.received.map((e) => e.id) });
    assert.deepEqual(res, { ok: true, value: { deleted: 2 } });
    second.close();

    const fetched = await server.http().get("/v1/messages").set("Authorization", bob.authHeader);
    assert.deepEqual(fetched.body, { envelopes: [], more: false });
  });

  it("pushes to a connected device after commit, over the socket send path", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const bobSocket = await server.connect(bob);
    await bobSocket.queueEmpty;
    const aliceSocket = await server.connect(alice);
    await aliceSocket.queueEmpty;

    const messages = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "live",
    );
    const sent = await aliceSocket.socket.emitWithAck("send", { destination: bob.uuid, messages });
    assert.equal(sent.ok, true);
    const [envelope] = await bobSocket.waitFor(1);
    assert.ok(envelope);
    assert.equal(sent.ok && sent.value.envelopes[0]?.id, envelope.id);
    assert.equal(await bob.decrypt(alice.uuid, 1, envelope.type, envelope.content), "live");

    // Bob replies: a Whisper message now that the session is established both ways.
    const reply = await encryptFor(
      bob,
      { uuid: alice.uuid, devices: [{ deviceId: 1, registrationId: alice.registrationId }] },
      "reply",
    );
    assert.equal(reply[0]?.type, "whisper");
    const replied = await bobSocket.socket.emitWithAck("send", { destination: alice.uuid, messages: reply });
    assert.equal(replied.ok, true);
    const [back] = await aliceSocket.waitFor(1);
    assert.equal(await alice.decrypt(bob.uuid, 1, back!.type, back!.content), "reply");
    bobSocket.close();
    aliceSocket.close();
  });
});
