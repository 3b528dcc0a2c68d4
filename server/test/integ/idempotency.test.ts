/**
 * Idempotency keys on sends (retried sends must not duplicate): a retry
 * with the same key gets the first answer and stores nothing new, on every
 * send path (REST, socket, sealed, multi-recipient); keys are scoped so one
 * client's key never meets another's.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import type { SenderCertificate } from "@signalapp/libsignal-client";
import type { MultiRecipientResponse, OutgoingMessage, SendMessagesResponse, SocketResult } from "@zimchat/protocol";
import { encryptFor, roomyRateLimits, startServer, startSession, type TestServer } from "../support/harness.js";
import { certificateFor, sealedSocket, setAccess } from "../support/sealed.js";
import type { SignalDevice } from "@zimchat/testing/signal";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const newKey = (): string => randomBytes(16).toString("base64url");

describe("idempotency keys on sends", () => {
  let server: TestServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  let carol: SignalDevice;
  before(async () => {
    server = await startServer({
      rateLimits: {
        ...roomyRateLimits,
        send: { points: 10_000, durationSeconds: 60 },
        sealedSend: { points: 10_000, durationSeconds: 60 },
      },
    });
    [alice, bob, carol] = [await server.register(), await server.register(), await server.register()];
    await startSession(server, alice, bob);
    await startSession(server, alice, carol);
    await startSession(server, carol, bob);
  });
  after(async () => server.stop());

  const envelopes = (): Promise<number> => server.home.database.prisma.envelope.count();
  const records = (): Promise<number> => server.home.database.prisma.sendIdempotency.count();
  const toBob = (from: SignalDevice, text: string): Promise<OutgoingMessage[]> =>
    encryptFor(from, { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] }, text);
  const put = (device: SignalDevice, to: string, body: object) =>
    server.http().put(`/v1/messages/${to}`).set("Authorization", device.authHeader).send(body);

  it("REST: a retry with the same key returns the same envelope ids and timestamp and stores nothing new", async () => {
    const key = newKey();
    const body = { messages: await toBob(alice, "once"), idempotencyKey: key };
    const first = await put(alice, bob.uuid, body);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const [queued, kept] = [await envelopes(), await records()];
    // The same body, and a re-encrypted one (a client that encrypts again before retrying): both are the same send.
    for (const messages of [body.messages, await toBob(alice, "once")]) {
      const again = await put(alice, bob.uuid, { messages, idempotencyKey: key });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.deepEqual(again.body, first.body);
    }
    assert.equal(await envelopes(), queued, "queue depth unchanged");
    assert.equal(await records(), kept);
    // Without a key, a send is a new send every time (old clients).
    const plain = await put(alice, bob.uuid, { messages: await toBob(alice, "no key") });
    assert.equal(plain.status, 200);
    assert.equal(await envelopes(), queued + 1);
  });

  it("socket `send` and REST share the device's keys: a retry by either transport is answered, stored once", async () => {
    const socket = await server.connect(alice);
    try {
      const key = newKey();
      const queued = await envelopes();
      const first = (await socket.socket.emitWithAck("send", {
        destination: bob.uuid,
        messages: await toBob(alice, "by socket"),
        idempotencyKey: key,
      })) as SocketResult<SendMessagesResponse>;
      assert.ok(first.ok, JSON.stringify(first));
      const again = (await socket.socket.emitWithAck("send", {
        destination: bob.uuid,
        messages: await toBob(alice, "by socket"),
        idempotencyKey: key,
      })) as SocketResult<SendMessagesResponse>;
      assert.deepEqual(again, first);
      const byRest = await put(alice, bob.uuid, { messages: await toBob(alice, "by socket"), idempotencyKey: key });
      assert.deepEqual(byRest.body, first.value);
      assert.equal(await envelopes(), queued + 1);
    } finally {
      socket.close();
    }
  });

  it("concurrent retries (one group commit) get one answer, stored once", async () => {
    const key = newKey();
    const queued = await envelopes();
    const bodies = await Promise.all([1, 2, 3, 4].map(() => toBob(alice, "racing")));
    const answers = await Promise.all(
      bodies.map((messages) => put(alice, bob.uuid, { messages, idempotencyKey: key })),
    );
    for (const a of answers) assert.deepEqual(a.body, answers[0]!.body);
    assert.equal(answers[0]!.status, 200);
    assert.equal(await envelopes(), queued + 1);
  });

  it("a key reused by another device does not collide; the same key to other recipients is 422 idempotency_conflict", async () => {
    const key = newKey();
    const mine = await put(alice, bob.uuid, { messages: await toBob(alice, "alice"), idempotencyKey: key });
    const theirs = await put(carol, bob.uuid, { messages: await toBob(carol, "carol"), idempotencyKey: key });
    assert.equal(theirs.status, 200, JSON.stringify(theirs.body));
    assert.notEqual(theirs.body.envelopes[0].id, mine.body.envelopes[0].id);

    const queued = await envelopes();
    const elsewhere = await put(alice, carol.uuid, {
      messages: await encryptFor(
        alice,
        { uuid: carol.uuid, devices: [{ deviceId: 1, registrationId: carol.registrationId }] },
        "other",
      ),
      idempotencyKey: key,
    });
    assert.equal(elsewhere.status, 422);
    assert.equal(elsewhere.body.code, "idempotency_conflict");
    assert.equal(await envelopes(), queued, "a conflict stores nothing");
  });

  it("a retry is answered even when the recipient's devices changed since (no 409 for a committed send)", async () => {
    const dave = await server.register();
    await startSession(server, alice, dave);
    const key = newKey();
    const messages = await encryptFor(
      alice,
      { uuid: dave.uuid, devices: [{ deviceId: 1, registrationId: dave.registrationId }] },
      "before the link",
    );
    const first = await put(alice, dave.uuid, { messages, idempotencyKey: key });
    assert.equal(first.status, 200);
    const { linkDevice } = await import("../support/harness.js");
    await linkDevice(server, dave);
    const again = await put(alice, dave.uuid, { messages, idempotencyKey: key });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.deepEqual(again.body, first.body);
  });

  it("refuses a malformed key with 400 before storing anything", async () => {
    const queued = await envelopes();
    for (const idempotencyKey of ["short", "x".repeat(65), "has spaces in it!!", 42]) {
      const res = await put(alice, bob.uuid, { messages: await toBob(alice, "bad key"), idempotencyKey });
      assert.equal(res.status, 400, String(idempotencyKey));
      assert.equal(res.body.code, "invalid_request");
    }
    assert.equal(await envelopes(), queued);
  });

  describe("sealed sender", () => {
    let bobKey: Buffer;
    let carolKey: Buffer;
    let certificate: SenderCertificate;
    before(async () => {
      bobKey = await setAccess(server, bob);
      carolKey = await setAccess(server, carol);
      certificate = await certificateFor(server, alice);
    });

    const sealedTo = async (to: SignalDevice, text: string): Promise<OutgoingMessage[]> => [
      {
        ...(await alice.sealedEncrypt(to.uuid, 1, text, certificate)),
        destinationDeviceId: 1,
        destinationRegistrationId: to.registrationId,
      },
    ];

    it("REST and /sealed socket: a retry gets the first answer; the key is scoped by destination", async () => {
      const key = newKey();
      const queued = await envelopes();
      const first = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Unidentified-Access-Key", b64(bobKey))
        .send({ messages: await sealedTo(bob, "sealed"), idempotencyKey: key });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const socket = await sealedSocket(server);
      try {
        const again = (await socket.emitWithAck("send", {
          destination: bob.uuid,
          messages: await sealedTo(bob, "sealed"),
          accessKey: b64(bobKey),
          idempotencyKey: key,
        })) as SocketResult<SendMessagesResponse>;
        assert.ok(again.ok, JSON.stringify(again));
        assert.deepEqual(again.value, first.body);
        assert.equal(await envelopes(), queued + 1);
        // The same key to another destination is another send (its own scope): no conflict, nothing learnt.
        const other = (await socket.emitWithAck("send", {
          destination: carol.uuid,
          messages: await sealedTo(carol, "sealed"),
          accessKey: b64(carolKey),
          idempotencyKey: key,
        })) as SocketResult<SendMessagesResponse>;
        assert.ok(other.ok, JSON.stringify(other));
        assert.equal(await envelopes(), queued + 2);
      } finally {
        socket.close();
      }
      // An authenticated device using the same key does not meet the sealed one.
      const authenticated = await put(alice, bob.uuid, {
        messages: await toBob(alice, "identified"),
        idempotencyKey: key,
      });
      assert.equal(authenticated.status, 200);
      assert.notEqual(authenticated.body.envelopes[0].id, first.body.envelopes[0].id);
    });

    it("the access key is checked before the key is looked up: a stranger learns nothing and cannot claim the key", async () => {
      const key = newKey();
      const stranger = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Unidentified-Access-Key", b64(randomBytes(16)))
        .send({ messages: await sealedTo(bob, "x"), idempotencyKey: key });
      assert.equal(stranger.status, 401);
      const honest = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Unidentified-Access-Key", b64(bobKey))
        .send({ messages: await sealedTo(bob, "x"), idempotencyKey: key });
      assert.equal(honest.status, 200, "a refused send claimed no key");
    });

    it("multi-recipient, REST and socket `send-multi`: a retry gets the first answer and stores nothing new", async () => {
      const distributionId = randomUUID();
      const addresses = [bob.address, carol.address];
      const accessKeys = [
        { uuid: bob.uuid, accessKey: b64(bobKey) },
        { uuid: carol.uuid, accessKey: b64(carolKey) },
      ];
      const key = newKey();
      const message = b64(await alice.sealedMultiEncrypt(addresses, distributionId, "group", certificate));
      const queued = await envelopes();
      const first = await server
        .http()
        .put("/v1/messages/multi-recipient")
        .send({ message, accessKeys, idempotencyKey: key });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const socket = await sealedSocket(server);
      try {
        const again = (await socket.emitWithAck("send-multi", {
          message,
          accessKeys: [...accessKeys].reverse(),
          idempotencyKey: key,
        })) as SocketResult<MultiRecipientResponse>;
        assert.ok(again.ok, JSON.stringify(again));
        assert.deepEqual(again.value, first.body);
      } finally {
        socket.close();
      }
      // Authenticated multi-recipient: scoped by the device.
      const authKey = newKey();
      const byAlice = await server
        .http()
        .put("/v1/messages/multi-recipient")
        .set("Authorization", alice.authHeader)
        .send({ message, idempotencyKey: authKey });
      assert.equal(byAlice.status, 200);
      const retried = await server
        .http()
        .put("/v1/messages/multi-recipient")
        .set("Authorization", alice.authHeader)
        .send({ message, idempotencyKey: authKey });
      assert.deepEqual(retried.body, byAlice.body);
      assert.equal(await envelopes(), queued + 4);
    });
  });

  it("counts replays and conflicts in /metrics; records expire and are swept with the envelopes", async () => {
    const text = await server
      .http()
      .get("/metrics")
      .then((r) => r.text);
    assert.match(text, /zimchat_send_replays_total [1-9]/);
    assert.match(text, /zimchat_refusals_total\{reason="idempotency_conflict"\} [1-9]/);
    assert.ok((await records()) > 0);
    const key = newKey();
    const first = await put(alice, bob.uuid, { messages: await toBob(alice, "expiring"), idempotencyKey: key });
    // Age every record past its expiry (as time would): an expired key is a new send, and the sweep deletes the rest.
    await server.home.database.prisma.sendIdempotency.updateMany({ data: { expiresAt: BigInt(Date.now() - 1) } });
    const later = await put(alice, bob.uuid, { messages: await toBob(alice, "expiring"), idempotencyKey: key });
    assert.equal(later.status, 200, JSON.stringify(later.body));
    assert.notEqual(later.body.envelopes[0].id, first.body.envelopes[0].id);
    await server.home.services.mailbox.sweepExpired();
    assert.equal(await records(), 1, "only the new send's record is left");
  });
});
