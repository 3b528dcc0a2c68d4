/**
 * Multi-device linking against the real app: the new device asks for a code,
 * the primary confirms it with a provisioning message sealed to the new
 * device (real libsignal `PublicKey.seal`), the new device fetches and opens
 * it, registers with keys signed by the account's identity key, and then
 * authenticates, uploads keys, shows up in bundles and receives envelopes.
 * Forged, stale and concurrent links are refused with exact codes and change
 * nothing. Runs on SQLite, and on PostgreSQL when ZIMCHAT_TEST_DATABASE_URL names one.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { PrivateKey } from "@signalapp/libsignal-client";
import { limits, type Envelope, type LinkDeviceRequest } from "@zimchat/protocol";
import { ConfigError, defaultRateLimits, resolveConfig, type RateLimits } from "../../src/index.js";
import {
  encryptFor,
  linkDevice,
  signedEc,
  signedKyber,
  startServer,
  startSession,
  type TestServer,
} from "../support/harness.js";
import { SignalDevice } from "@zimchat/testing/signal";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const bytes = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, "base64"));
const provisioningInfo = "ZimChat test provisioning";
const today = (): string => new Date().toISOString().slice(0, 10);

/** Default limits, but enough linking codes and registrations for one test file from one address. */
const roomyLimits: RateLimits = {
  ...defaultRateLimits,
  register: { points: 10_000, durationSeconds: 3600 },
  linkCode: { points: 10_000, durationSeconds: 600 },
};

type Res = { status: number; body: any; headers: Record<string, string> };

function assertRefused(res: Res, status: number, code: string, what: string): void {
  assert.equal(res.status, status, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.code, code, `${what}: ${JSON.stringify(res.body)}`);
}

/** The new device's side: an ephemeral key pair and a fresh linking code. */
async function newCode(server: TestServer): Promise<{ code: string; expiresAt: number; ephemeral: PrivateKey }> {
  const res = await server.http().post("/v1/devices/links");
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { ...(res.body as { code: string; expiresAt: number }), ephemeral: PrivateKey.generate() };
}

/** The primary's side: seals the account's identity key to the new device's ephemeral key and confirms the code. */
function confirm(
  server: TestServer,
  by: SignalDevice,
  code: string,
  ephemeral: PrivateKey,
  identity: PrivateKey = by.identity,
): Promise<Res> {
  const sealed = ephemeral.getPublicKey().seal(identity.serialize(), provisioningInfo);
  return server
    .http()
    .put(`/v1/devices/links/${code}`)
    .set("Authorization", by.authHeader)
    .send({ provisioningMessage: b64(sealed) });
}

function status(server: TestServer, code: string): Promise<Res> {
  return server.http().get(`/v1/devices/links/${code}`);
}

/** A link request for `device`, its signed keys signed by its identity key (the account's, unless forged). */
function linkBody(device: SignalDevice, code: string): LinkDeviceRequest {
  return {
    code,
    password: device.password,
    registrationId: device.registrationId,
    signedPreKey: device.signedPreKey(),
    pqLastResortPreKey: device.kyberPreKey(),
  };
}

/** Polls the code, opens the provisioning message, and builds the new device with the account's identity key. */
async function provisionedDevice(server: TestServer, code: string, ephemeral: PrivateKey): Promise<SignalDevice> {
  const polled = await status(server, code);
  assert.equal(polled.status, 200, JSON.stringify(polled.body));
  assert.equal(polled.body.confirmed, true);
  const identity = PrivateKey.deserialize(ephemeral.open(bytes(polled.body.provisioningMessage), provisioningInfo));
  return new SignalDevice(identity);
}

/** The whole flow (the harness's): code, confirmation by `primary`, poll, register. Returns the linked device. */
async function link(server: TestServer, primary: SignalDevice): Promise<SignalDevice> {
  return (await linkDevice(server, primary)).device;
}

async function deviceIds(server: TestServer, device: SignalDevice): Promise<number[]> {
  const res = await server.http().get("/v1/devices").set("Authorization", device.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body.devices as { id: number }[]).map((d) => d.id);
}

async function queue(server: TestServer, device: SignalDevice): Promise<Envelope[]> {
  const res = await server.http().get("/v1/messages").set("Authorization", device.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.envelopes;
}

async function keyCount(server: TestServer, device: SignalDevice): Promise<{ ecCount: number; pqCount: number }> {
  const res = await server.http().get("/v1/keys/count").set("Authorization", device.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

describe("device linking", () => {
  let server: TestServer;
  const logs: string[] = [];
  before(async () => {
    server = await startServer({ rateLimits: roomyLimits, logLevel: "trace" }, logs);
  });
  after(async () => server.stop());

  it("links a device end to end: it authenticates, uploads keys, is listed, is in bundles and receives envelopes", async () => {
    const primary = await server.register();
    const watcher = await server.connect(primary);
    let changes = 0;
    watcher.socket.on("devices-changed", () => changes++);
    await watcher.queueEmpty;

    const { code, expiresAt, ephemeral } = await newCode(server);
    assert.match(code, /^[A-Za-z0-9_-]{22}$/);
    assert.ok(Math.abs(expiresAt - (Date.now() + limits.linkCodeTtlSeconds * 1000)) < 5000, "valid for 10 minutes");
    assert.deepEqual((await status(server, code)).body, { confirmed: false });
    assert.equal((await confirm(server, primary, code, ephemeral)).status, 204);
    const linked = await provisionedDevice(server, code, ephemeral);
    assert.ok(
      linked.identity.getPublicKey().equals(primary.identity.getPublicKey()),
      "the sealed identity key arrived intact",
    );

    const body = linkBody(linked, code);
    const res = await server.http().post("/v1/devices").send(body);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const whoPrimary = await server.http().get("/v1/accounts/whoami").set("Authorization", primary.authHeader);
    assert.deepEqual(res.body, { uuid: primary.uuid, deviceId: 2, username: whoPrimary.body.username });
    linked.uuid = primary.uuid;
    linked.deviceId = 2;
    assertRefused(await status(server, code), 404, "link_not_found", "a used code is gone");

    const who = await server.http().get("/v1/accounts/whoami").set("Authorization", linked.authHeader);
    assert.equal(who.status, 200);
    assert.equal(who.body.deviceId, 2);
    const upload = await server
      .http()
      .put("/v1/keys")
      .set("Authorization", linked.authHeader)
      .send(linked.keyUpload(3, 2));
    assert.equal(upload.status, 204, JSON.stringify(upload.body));
    assert.deepEqual(await keyCount(server, linked), { ecCount: 3, pqCount: 2 });

    const list = await server.http().get("/v1/devices").set("Authorization", linked.authHeader);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.devices, [
      { id: 1, created: today(), lastSeen: today() },
      { id: 2, created: today(), lastSeen: today() },
    ]);
    const row = await server.home.database.prisma.device.findUniqueOrThrow({
      where: { accountId_id: { accountId: primary.uuid, id: 2 } },
    });
    assert.equal(row.createdAt.getTime() % 86_400_000, 0, "the creation time is kept to the day");

    const bob = await server.register();
    const bundles = await server.http().get(`/v1/keys/${primary.uuid}/*`).set("Authorization", bob.authHeader);
    assert.equal(bundles.status, 200);
    assert.deepEqual(
      bundles.body.devices.map((d: { deviceId: number }) => d.deviceId),
      [1, 2],
    );
    const two = bundles.body.devices[1];
    assert.equal(two.registrationId, linked.registrationId);
    assert.equal(two.signedPreKey.publicKey, body.signedPreKey.publicKey);
    assert.ok(two.preKey, "a one-time key of the linked device");
    await bob.processBundle(primary.uuid, bundles.body);

    // A send to the account must now name both devices.
    const onlyPrimary = await encryptFor(
      bob,
      { uuid: primary.uuid, devices: [{ deviceId: 1, registrationId: primary.registrationId }] },
      "x",
    );
    const refused = await server
      .http()
      .put(`/v1/messages/${primary.uuid}`)
      .set("Authorization", bob.authHeader)
      .send({ messages: onlyPrimary });
    assertRefused(refused, 409, "mismatched_devices", "a send that forgets the linked device");
    assert.deepEqual(refused.body.missingDevices, [2]);

    const messages = await encryptFor(
      bob,
      {
        uuid: primary.uuid,
        devices: [
          { deviceId: 1, registrationId: primary.registrationId },
          { deviceId: 2, registrationId: linked.registrationId },
        ],
      },
      "hello, second device",
    );
    const sent = await server
      .http()
      .put(`/v1/messages/${primary.uuid}`)
      .set("Authorization", bob.authHeader)
      .send({ messages });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const conn = await server.connect(linked);
    const [envelope] = await conn.waitFor(1);
    assert.ok(envelope);
    assert.equal(await linked.decrypt(bob.uuid, 1, envelope.type, envelope.content), "hello, second device");
    assert.equal(changes, 1, "the primary's socket heard of the new device once");
    conn.close();
    watcher.close();
  });

  it("refuses unknown, unconfirmed and reused codes, non-primary confirmations and foreign signatures, changing nothing", async () => {
    const primary = await server.register();
    const second = await link(server, primary);
    const unknown = randomBytes(16).toString("base64url");

    // Unknown code: every step is a 404.
    assertRefused(await status(server, unknown), 404, "link_not_found", "status of an unknown code");
    assertRefused(
      await confirm(server, primary, unknown, PrivateKey.generate()),
      404,
      "link_not_found",
      "confirm an unknown code",
    );
    const stranger = new SignalDevice(primary.identity);
    assertRefused(
      await server.http().post("/v1/devices").send(linkBody(stranger, unknown)),
      404,
      "link_not_found",
      "link with an unknown code",
    );

    // Unconfirmed: 409, and the code is not consumed.
    const pending = await newCode(server);
    const early = new SignalDevice(primary.identity);
    assertRefused(
      await server.http().post("/v1/devices").send(linkBody(early, pending.code)),
      409,
      "link_not_confirmed",
      "link before confirmation",
    );
    assert.deepEqual((await status(server, pending.code)).body, { confirmed: false });

    // Only the primary confirms.
    assertRefused(
      await confirm(server, second, pending.code, pending.ephemeral, primary.identity),
      403,
      "forbidden",
      "confirm by device 2",
    );
    assert.deepEqual((await status(server, pending.code)).body, { confirmed: false });

    // Confirmed once; a second confirmation (by anyone) is a 409 and leaves the first message.
    assert.equal((await confirm(server, primary, pending.code, pending.ephemeral)).status, 204);
    const first = (await status(server, pending.code)).body.provisioningMessage;
    assertRefused(
      await confirm(server, primary, pending.code, pending.ephemeral),
      409,
      "link_already_confirmed",
      "confirm twice",
    );
    const other = await server.register();
    assertRefused(
      await confirm(server, other, pending.code, pending.ephemeral),
      409,
      "link_already_confirmed",
      "another account confirms",
    );
    assert.equal((await status(server, pending.code)).body.provisioningMessage, first);

    // Keys signed by another identity: 422, the code stays confirmed and unused.
    const forger = new SignalDevice();
    assertRefused(
      await server.http().post("/v1/devices").send(linkBody(forger, pending.code)),
      422,
      "invalid_signature",
      "keys signed by a stranger",
    );
    const halfForged = { ...linkBody(early, pending.code), pqLastResortPreKey: signedKyber(forger.identity, 7) };
    assertRefused(
      await server.http().post("/v1/devices").send(halfForged),
      422,
      "invalid_signature",
      "Kyber key signed by a stranger",
    );
    const ecForged = { ...linkBody(early, pending.code), signedPreKey: signedEc(forger.identity, 8) };
    assertRefused(
      await server.http().post("/v1/devices").send(ecForged),
      422,
      "invalid_signature",
      "EC key signed by a stranger",
    );
    const notAKey = {
      ...linkBody(early, pending.code),
      signedPreKey: { keyId: 9, publicKey: b64(new Uint8Array(33)), signature: b64(new Uint8Array(64)) },
    };
    assertRefused(
      await server.http().post("/v1/devices").send(notAKey),
      400,
      "invalid_key",
      "a signed pre-key that is not a key",
    );
    assert.equal((await status(server, pending.code)).body.confirmed, true);
    assert.deepEqual(await deviceIds(server, primary), [1, 2]);

    // The genuine device can still use the code, once.
    const res = await server.http().post("/v1/devices").send(linkBody(early, pending.code));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.deviceId, 3);
    const again = new SignalDevice(primary.identity);
    assertRefused(
      await server.http().post("/v1/devices").send(linkBody(again, pending.code)),
      404,
      "link_not_found",
      "a reused code",
    );
    assert.deepEqual(await deviceIds(server, primary), [1, 2, 3]);
    assert.deepEqual(await deviceIds(server, other), [1]);
  });

  it("caps devices per account under concurrency: 8 simultaneous links with a cap of 6 give ids 2..6 and 3 refusals", async () => {
    const primary = await server.register();
    const codes = await Promise.all(Array.from({ length: 8 }, () => newCode(server)));
    for (const c of codes) assert.equal((await confirm(server, primary, c.code, c.ephemeral)).status, 204);
    const devices = codes.map(() => new SignalDevice(primary.identity));
    const answers = await Promise.all(
      codes.map((c, i) => server.http().post("/v1/devices").send(linkBody(devices[i]!, c.code))),
    );
    const linked = answers
      .filter((a) => a.status === 201)
      .map((a) => a.body.deviceId as number)
      .sort((a, b) => a - b);
    assert.deepEqual(linked, [2, 3, 4, 5, 6], answers.map((a) => `${a.status} ${JSON.stringify(a.body)}`).join("; "));
    const refused = answers.filter((a) => a.status !== 201);
    assert.equal(refused.length, 3);
    for (const r of refused) assertRefused(r, 409, "too_many_devices", "over the cap");
    assert.deepEqual(await deviceIds(server, primary), [1, 2, 3, 4, 5, 6]);

    // Each linked device works with its own password, on the id it was given.
    for (const [i, answer] of answers.entries()) {
      if (answer.status !== 201) continue;
      const device = devices[i]!;
      device.uuid = primary.uuid;
      device.deviceId = answer.body.deviceId;
      const who = await server.http().get("/v1/accounts/whoami").set("Authorization", device.authHeader);
      assert.equal(who.body.deviceId, device.deviceId);
    }
    // Refused codes were not consumed: after an unlink, one of them links into the freed (lowest) id.
    const leftover = codes[answers.findIndex((a) => a.status !== 201)]!;
    assert.equal((await status(server, leftover.code)).body.confirmed, true);
    assert.equal((await server.http().delete("/v1/devices/4").set("Authorization", primary.authHeader)).status, 204);
    assert.equal((await server.http().delete("/v1/devices/3").set("Authorization", primary.authHeader)).status, 204);
    const late = new SignalDevice(primary.identity);
    const res = await server.http().post("/v1/devices").send(linkBody(late, leftover.code));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.deviceId, 3, "the lowest free id");
    assert.equal((await link(server, primary)).deviceId, 4);
    const another = codes[answers.findLastIndex((a) => a.status !== 201)]!;
    assert.notEqual(another, leftover);
    assertRefused(
      await server
        .http()
        .post("/v1/devices")
        .send(linkBody(new SignalDevice(primary.identity), another.code)),
      409,
      "too_many_devices",
      "full again",
    );
  });

  it("unlinks: a relinked id starts with an empty queue and no one-time keys, the old password stops working", async () => {
    const primary = await server.register();
    const bob = await server.register();
    const two = await link(server, primary);
    const three = await link(server, primary);
    assert.equal(
      (await server.http().put("/v1/keys").set("Authorization", two.authHeader).send(two.keyUpload(5, 5))).status,
      204,
    );

    await startSession(server, bob, primary);
    const devices = [primary, two, three].map((d) => ({ deviceId: d.deviceId, registrationId: d.registrationId }));
    const messages = await encryptFor(bob, { uuid: primary.uuid, devices }, "before unlink");
    assert.equal(
      (await server.http().put(`/v1/messages/${primary.uuid}`).set("Authorization", bob.authHeader).send({ messages }))
        .status,
      200,
    );
    assert.equal((await queue(server, two)).length, 1);
    assert.deepEqual(
      await keyCount(server, two),
      { ecCount: 4, pqCount: 4 },
      "one of each claimed by Bob's bundle fetch",
    );

    // Who may remove whom.
    assertRefused(
      await server.http().delete("/v1/devices/1").set("Authorization", primary.authHeader),
      403,
      "forbidden",
      "the primary removes itself",
    );
    assertRefused(
      await server.http().delete("/v1/devices/1").set("Authorization", two.authHeader),
      403,
      "forbidden",
      "device 2 removes the primary",
    );
    assertRefused(
      await server.http().delete("/v1/devices/2").set("Authorization", three.authHeader),
      403,
      "forbidden",
      "device 3 removes device 2",
    );
    assertRefused(
      await server.http().delete("/v1/devices/9").set("Authorization", primary.authHeader),
      404,
      "not_found",
      "no device 9",
    );
    assertRefused(
      await server.http().delete("/v1/devices/0").set("Authorization", primary.authHeader),
      400,
      "invalid_request",
      "device 0",
    );
    assert.deepEqual(await deviceIds(server, primary), [1, 2, 3]);

    assert.equal((await server.http().delete("/v1/devices/2").set("Authorization", primary.authHeader)).status, 204);
    assertRefused(
      await server.http().get("/v1/accounts/whoami").set("Authorization", two.authHeader),
      401,
      "unauthorized",
      "an unlinked device",
    );
    assert.equal(
      (await server.http().delete("/v1/devices/3").set("Authorization", three.authHeader)).status,
      204,
      "a device removes itself",
    );
    assert.deepEqual(await deviceIds(server, primary), [1]);

    const relinked = await link(server, primary);
    assert.equal(relinked.deviceId, 2);
    const listed = await server.http().get("/v1/devices").set("Authorization", relinked.authHeader);
    assert.deepEqual(listed.body.devices, [
      { id: 1, created: today(), lastSeen: today() },
      { id: 2, created: today(), lastSeen: today() },
    ]);
    assert.deepEqual(await queue(server, relinked), [], "the old device 2's envelope went with it");
    assert.deepEqual(await keyCount(server, relinked), { ecCount: 0, pqCount: 0 });
    const { prisma } = server.home.database;
    const where = { accountId: primary.uuid, deviceId: 2 };
    assert.equal(await prisma.envelope.count({ where }), 0);
    assert.equal(await prisma.ecPreKey.count({ where }), 0);
    assert.equal(await prisma.kyberPreKey.count({ where }), 0);
    assert.equal(await prisma.envelope.count({ where: { accountId: primary.uuid, deviceId: 3 } }), 0);
    // Bob's stale view (devices 1, 2, 3 with the old registration ids) is refused; the new bundle is the new device's.
    const stale = await encryptFor(bob, { uuid: primary.uuid, devices: devices.slice(0, 2) }, "stale");
    const res = await server
      .http()
      .put(`/v1/messages/${primary.uuid}`)
      .set("Authorization", bob.authHeader)
      .send({ messages: stale });
    assertRefused(res, 410, "stale_devices", "a send to the old device 2");
    const bundle = await server.http().get(`/v1/keys/${primary.uuid}/2`).set("Authorization", bob.authHeader);
    assert.equal(bundle.body.devices[0].registrationId, relinked.registrationId);
    assert.equal(bundle.body.devices[0].preKey, null);
  });

  it("tells every connected device of the account when its device list changes, and no one else; closes a removed device", async () => {
    const primary = await server.register();
    const stranger = await server.register();
    const mine = await server.connect(primary);
    const theirs = await server.connect(stranger);
    await Promise.all([mine.queueEmpty, theirs.queueEmpty]);
    const heard = { mine: 0, theirs: 0 };
    mine.socket.on("devices-changed", () => heard.mine++);
    theirs.socket.on("devices-changed", () => heard.theirs++);
    const next = (): Promise<void> => new Promise((resolve) => mine.socket.once("devices-changed", () => resolve()));

    let changed = next();
    const two = await link(server, primary);
    await changed;
    const twoConn = await server.connect(two);
    await twoConn.queueEmpty;
    let twoHeard = 0;
    twoConn.socket.on("devices-changed", () => twoHeard++);

    changed = next();
    const three = await link(server, primary);
    await changed;
    assert.equal(three.deviceId, 3);

    const closing = new Promise<string>((resolve) => twoConn.socket.once("closing", resolve));
    const gone = new Promise<void>((resolve) => twoConn.socket.once("disconnect", () => resolve()));
    changed = next();
    assert.equal((await server.http().delete("/v1/devices/2").set("Authorization", primary.authHeader)).status, 204);
    assert.equal(await closing, "removed");
    await gone;
    await changed;
    // A refused link and a refused removal are not changes.
    assertRefused(
      await server.http().delete("/v1/devices/2").set("Authorization", primary.authHeader),
      404,
      "not_found",
      "removed twice",
    );
    await sleep(200);
    assert.deepEqual(heard, { mine: 3, theirs: 0 });
    assert.equal(twoHeard, 1, "device 2 heard of device 3");
    mine.close();
    theirs.close();
  });

  it("an identity reset from the primary closes the other devices' connections and tells the primary", async () => {
    const primary = await server.register();
    const two = await link(server, primary);
    const mine = await server.connect(primary);
    const twoConn = await server.connect(two);
    await Promise.all([mine.queueEmpty, twoConn.queueEmpty]);
    const closing = new Promise<string>((resolve) => twoConn.socket.once("closing", resolve));
    const changed = new Promise<void>((resolve) => mine.socket.once("devices-changed", () => resolve()));
    const identity = PrivateKey.generate();
    const reset = await server
      .http()
      .put("/v1/accounts/identity")
      .set("Authorization", primary.authHeader)
      .send({
        registrationId: 4242,
        identityKey: b64(identity.getPublicKey().serialize()),
        signedPreKey: signedEc(identity, 77),
        pqLastResortPreKey: signedKyber(identity, 78),
      });
    assert.equal(reset.status, 204);
    assert.equal(await closing, "removed");
    await changed;
    assert.deepEqual(await deviceIds(server, primary), [1]);
    mine.close();
  });

  it("answers bad input with 400 and changes nothing", async () => {
    const primary = await server.register();
    const pending = await newCode(server);
    const path = `/v1/devices/links/${pending.code}`;
    const auth = primary.authHeader;
    const badCodes = [
      "short",
      `${pending.code}A`,
      `${pending.code.slice(0, 21)}+`,
      `${pending.code.slice(0, 21)}.`,
      "%00".repeat(22),
    ];
    for (const bad of badCodes) {
      assertRefused(await server.http().get(`/v1/devices/links/${bad}`), 400, "invalid_request", `status of ${bad}`);
      const put = await server
        .http()
        .put(`/v1/devices/links/${bad}`)
        .set("Authorization", auth)
        .send({ provisioningMessage: b64(randomBytes(100)) });
      assertRefused(put, 400, "invalid_request", `confirm ${bad}`);
      const post = await server
        .http()
        .post("/v1/devices")
        .send(linkBody(new SignalDevice(primary.identity), bad));
      assertRefused(post, 400, "invalid_request", `link with ${bad}`);
    }
    const bodies: [string, unknown][] = [
      [
        "oversize provisioning message",
        { provisioningMessage: b64(randomBytes(limits.maxProvisioningMessageBytes + 1)) },
      ],
      ["empty provisioning message", { provisioningMessage: "" }],
      ["not base64", { provisioningMessage: "not base64!" }],
      ["unknown field", { provisioningMessage: b64(randomBytes(10)), accountId: primary.uuid }],
      ["no body", {}],
    ];
    for (const [name, body] of bodies) {
      assertRefused(
        await server
          .http()
          .put(path)
          .set("Authorization", auth)
          .send(body as object),
        400,
        "invalid_request",
        name,
      );
    }
    assertRefused(
      await server
        .http()
        .put(path)
        .send({ provisioningMessage: b64(randomBytes(10)) }),
      401,
      "unauthorized",
      "confirm without credentials",
    );
    assert.deepEqual(
      (await status(server, pending.code)).body,
      { confirmed: false },
      "refused confirmations changed nothing",
    );
    const message = b64(randomBytes(limits.maxProvisioningMessageBytes));
    const largest = await server.http().put(path).set("Authorization", auth).send({ provisioningMessage: message });
    assert.equal(largest.status, 204, "the largest provisioning message is accepted");
    assert.equal((await status(server, pending.code)).body.provisioningMessage, message, "and returned byte for byte");

    const device = new SignalDevice(primary.identity);
    const good = linkBody(device, pending.code);
    const badLinks: [string, unknown][] = [
      ["short password", { ...good, password: "short" }],
      ["registration id 0", { ...good, registrationId: 0 }],
      ["missing Kyber key", { ...good, pqLastResortPreKey: undefined }],
      ["unknown field", { ...good, deviceId: 7 }],
      ["EC key where Kyber belongs", { ...good, pqLastResortPreKey: good.signedPreKey }],
    ];
    for (const [name, body] of badLinks)
      assertRefused(
        await server
          .http()
          .post("/v1/devices")
          .send(body as object),
        400,
        "invalid_request",
        name,
      );
    assert.deepEqual(await deviceIds(server, primary), [1]);
    assert.equal((await status(server, pending.code)).body.confirmed, true, "the code is still there, unused");
  });

  it("keeps codes and passwords out of the logs, and stores only a hash of each code", async () => {
    const primary = await server.register();
    const { code, ephemeral } = await newCode(server);
    await confirm(server, primary, code, ephemeral);
    const device = await provisionedDevice(server, code, ephemeral);
    await server.http().post("/v1/devices").send(linkBody(device, code));
    const text = logs.join("");
    assert.ok(logs.length > 0);
    assert.ok(!text.includes(code), "no linking code in the logs");
    assert.ok(!text.includes(device.password), "no password in the logs");
    assert.ok(!text.includes("127.0.0.1"), "no client address in the logs");
    const pendingCode = (await newCode(server)).code;
    const rows = await server.home.database.prisma.linkCode.findMany();
    assert.ok(rows.length >= 1);
    for (const row of rows) {
      assert.equal(row.codeHash.length, 32);
      assert.ok(!Buffer.from(row.codeHash).toString("latin1").includes(pendingCode));
    }
  });
});

describe("device linking: expiry, rate limit, configuration", () => {
  it("refuses expired codes with 410 at every step, and the sweep deletes them", async () => {
    const server = await startServer({ rateLimits: roomyLimits, linkCodeTtlMs: 1000 });
    try {
      const primary = await server.register();
      const confirmed = await newCode(server);
      assert.ok(confirmed.expiresAt - Date.now() <= 1000);
      assert.equal((await confirm(server, primary, confirmed.code, confirmed.ephemeral)).status, 204);
      const unconfirmed = await newCode(server);
      await sleep(1100);
      assertRefused(await status(server, confirmed.code), 410, "link_expired", "status of an expired confirmed code");
      assertRefused(
        await status(server, unconfirmed.code),
        410,
        "link_expired",
        "status of an expired unconfirmed code",
      );
      assertRefused(
        await confirm(server, primary, unconfirmed.code, unconfirmed.ephemeral),
        410,
        "link_expired",
        "confirm an expired code",
      );
      const device = new SignalDevice(primary.identity);
      assertRefused(
        await server.http().post("/v1/devices").send(linkBody(device, confirmed.code)),
        410,
        "link_expired",
        "link with an expired code",
      );
      assertRefused(
        await server.http().post("/v1/devices").send(linkBody(device, unconfirmed.code)),
        410,
        "link_expired",
        "link with an expired unconfirmed code",
      );
      assert.deepEqual(await deviceIds(server, primary), [1]);

      const fresh = await newCode(server);
      assert.equal(await server.home.services.devices.sweepExpiredLinks(), 2);
      assertRefused(await status(server, confirmed.code), 404, "link_not_found", "a swept code");
      assert.deepEqual(
        (await status(server, fresh.code)).body,
        { confirmed: false },
        "the sweep keeps unexpired codes",
      );
    } finally {
      await server.stop();
    }
  });

  it("rate limits code creation per client address", async () => {
    const server = await startServer({ rateLimits: { ...roomyLimits, linkCode: { points: 2, durationSeconds: 600 } } });
    try {
      await newCode(server);
      await newCode(server);
      const res = await server.http().post("/v1/devices/links");
      assertRefused(res, 429, "rate_limited", "the third code");
      assert.ok(Number(res.headers["retry-after"]) > 0);
      assert.equal(await server.home.database.prisma.linkCode.count(), 2);
    } finally {
      await server.stop();
    }
  });

  it("validates maxDevicesPerAccount and linkCodeTtlMs at start-up", () => {
    assert.equal(resolveConfig({}).maxDevicesPerAccount, 6);
    assert.equal(resolveConfig({}).linkCodeTtlMs, limits.linkCodeTtlSeconds * 1000);
    for (const bad of [0, -1, 1.5, 128, Number.NaN])
      assert.throws(() => resolveConfig({ maxDevicesPerAccount: bad }), ConfigError, String(bad));
    for (const bad of [0, 1.5, limits.linkCodeTtlSeconds * 1000 + 1])
      assert.throws(() => resolveConfig({ linkCodeTtlMs: bad }), ConfigError, String(bad));
    assert.equal(resolveConfig({ maxDevicesPerAccount: 127 }).maxDevicesPerAccount, 127);
  });

  it("a cap of 1 refuses every link", async () => {
    const server = await startServer({ rateLimits: roomyLimits, maxDevicesPerAccount: 1 });
    try {
      const primary = await server.register();
      const { code, ephemeral } = await newCode(server);
      assert.equal((await confirm(server, primary, code, ephemeral)).status, 204);
      const res = await server
        .http()
        .post("/v1/devices")
        .send(linkBody(new SignalDevice(primary.identity), code));
      assertRefused(res, 409, "too_many_devices", "cap 1");
      assert.equal((await status(server, code)).body.confirmed, true);
    } finally {
      await server.stop();
    }
  });
});
