import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrivateKey, ProtocolAddress, PublicKey, SenderCertificate } from "@signalapp/libsignal-client";
import type { Envelope, MultiRecipientRequest } from "@zimchat/protocol";
import { ConfigError, openHomeserver, resolveConfig } from "../../src/index.js";
import { keyFileNames, KeyFileError, loadOrCreateKeys } from "../../src/services/key-files.js";
import {
  freshDatabase,
  linkDevice,
  roomyRateLimits,
  startServer,
  startSession,
  type TestServer,
} from "../support/harness.js";
import { certificateFor, sealedSocket, setAccess } from "../support/sealed.js";
import { SignalDevice } from "@zimchat/testing/signal";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const fromB64 = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, "base64"));
const accessKeyHeader = "Unidentified-Access-Key";

async function trustRootOf(server: TestServer): Promise<PublicKey> {
  const res = await server.http().get("/v1/certificate/trust-root");
  assert.equal(res.status, 200);
  return PublicKey.deserialize(fromB64(res.body.publicKey));
}

async function envelopeCount(server: TestServer): Promise<number> {
  return server.home.database.prisma.envelope.count();
}

/** Everything queued for a device, through the REST fetch. */
async function queued(server: TestServer, device: SignalDevice): Promise<Envelope[]> {
  const res = await server.http().get("/v1/messages").set("Authorization", device.authHeader);
  assert.equal(res.status, 200);
  return res.body.envelopes;
}

describe("sealed sender: certificates", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits, senderCertificateTtlMs: 3_600_000 });
  });
  after(async () => server.stop());

  it("serves the trust root and its fingerprint, as stored in the data directory", async () => {
    const res = await server.http().get("/v1/certificate/trust-root");
    assert.equal(res.status, 200);
    const key = fromB64(res.body.publicKey);
    const hex = createHash("sha256").update(key).digest("hex");
    assert.equal(res.body.fingerprint, hex.match(/.{4}/g)!.join(" "));
    assert.equal(
      readFileSync(join(server.dataDir, "keys", keyFileNames.trustRootPublic), "utf8").trim(),
      res.body.publicKey,
    );
    for (const name of [keyFileNames.trustRootKey, keyFileNames.serverKey]) {
      assert.equal(statSync(join(server.dataDir, "keys", name)).mode & 0o777, 0o600, `${name} is owner-only`);
    }
  });

  it("issues sender certificates that libsignal validates against the trust root, for the configured lifetime", async () => {
    const alice = await server.register();
    const trustRoot = await trustRootOf(server);
    const before = Date.now();
    const certificate = await certificateFor(server, alice);
    assert.ok(certificate.validate(trustRoot, Date.now()));
    assert.equal(certificate.senderUuid(), alice.uuid);
    assert.equal(certificate.senderDeviceId(), 1);
    assert.ok(certificate.key().equals(alice.identity.getPublicKey()));
    assert.ok(certificate.expiration() >= before + 3_600_000 && certificate.expiration() <= Date.now() + 3_600_000);
    assert.ok(!certificate.validate(trustRoot, certificate.expiration() + 1), "expired certificates fail");
    assert.ok(!certificate.validate(PrivateKey.generate().getPublicKey(), Date.now()), "another trust root fails");

    const anonymous = await server.http().get("/v1/certificate/delivery");
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.code, "unauthorized");
  });

  it("keeps the keys across restarts, and refuses to start with a private key file others can read", async () => {
    const db = freshDatabase();
    try {
      const config = resolveConfig({ dataDir: db.dataDir, databaseUrl: db.url, logLevel: "silent" });
      const first = await openHomeserver(config);
      const root = first.services.certificates.trustRoot();
      await first.close();
      const second = await openHomeserver(config);
      assert.deepEqual(second.services.certificates.trustRoot(), root);
      await second.close();

      const keyPath = join(db.dataDir, "keys", keyFileNames.trustRootKey);
      chmodSync(keyPath, 0o640);
      await assert.rejects(openHomeserver(config), (error: unknown) => {
        assert.ok(error instanceof KeyFileError && error instanceof ConfigError);
        assert.match(error.message, /mode 0640/);
        assert.match(error.message, /chmod 600/);
        assert.ok(!error.message.includes(readFileSync(keyPath, "utf8").trim()), "the message does not carry the key");
        return true;
      });
    } finally {
      await db.drop();
    }
  });

  it("creates keys once (zimchat keys init) and shows the same fingerprint (zimchat keys show)", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "zimchat-keys-"));
    try {
      const bin = new URL("../../../bin/zimchat.js", import.meta.url).pathname;
      const run = (...args: string[]) =>
        spawnSync(process.execPath, [bin, "keys", ...args, "--data-dir", dataDir], { encoding: "utf8" });
      const missing = run("show");
      assert.equal(missing.status, 1);
      assert.match(missing.stderr, /keys init/);
      const init = run("init", "--json");
      assert.equal(init.status, 0, init.stderr);
      const created = JSON.parse(init.stdout) as { publicKey: string; fingerprint: string };
      assert.match(created.fingerprint, /^([0-9a-f]{4} ){15}[0-9a-f]{4}$/);
      assert.deepEqual(JSON.parse(run("init", "--json").stdout), created, "a second init keeps the keys");
      assert.deepEqual(JSON.parse(run("show", "--json").stdout), created);
      assert.equal(loadOrCreateKeys(dataDir).created, false);

      chmodSync(join(dataDir, "keys", keyFileNames.serverKey), 0o644);
      const refused = run("init");
      assert.equal(refused.status, 1);
      assert.match(refused.stderr, /server\.key has mode 0644.*chmod 600/);

      // The trust root's private key may live offline once the server certificate exists.
      chmodSync(join(dataDir, "keys", keyFileNames.serverKey), 0o600);
      renameSync(join(dataDir, "keys", keyFileNames.trustRootKey), join(dataDir, "offline.key"));
      assert.deepEqual(JSON.parse(run("init", "--json").stdout), created, "runs on the existing certificate");
      rmSync(join(dataDir, "keys", keyFileNames.serverKey));
      assert.throws(
        () => loadOrCreateKeys(dataDir),
        (error: unknown) => error instanceof KeyFileError && /trust-root\.key/.test(error.message),
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("sealed sender: 1:1 sends without credentials", () => {
  let server: TestServer;
  const logs: string[] = [];
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits, logLevel: "trace" }, logs);
  });
  after(async () => server.stop());

  it("delivers with the right access key, stores and delivers no sender, and the recipient learns it from the certificate", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const bobKey = await setAccess(server, bob);
    await startSession(server, alice, bob);
    const certificate = await certificateFor(server, alice);
    const message = await alice.sealedEncrypt(bob.uuid, 1, "sealed hello", certificate);
    const res = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set(accessKeyHeader, b64(bobKey))
      .send({ messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const id = res.body.envelopes[0].id as string;

    const row = await server.home.database.prisma.envelope.findUnique({ where: { id } });
    assert.equal(row?.sourceAccountId, null);
    assert.equal(row?.sourceDeviceId, null);

    const bobSocket = await server.connect(bob);
    const [envelope] = await bobSocket.waitFor(1);
    bobSocket.close();
    assert.ok(envelope);
    assert.equal(envelope.id, id);
    assert.equal(envelope.type, "sealed");
    assert.ok(!("sourceUuid" in envelope) && !("sourceDeviceId" in envelope), JSON.stringify(envelope));
    const opened = await bob.sealedDecrypt(envelope.content, await trustRootOf(server));
    assert.deepEqual(opened, { senderUuid: alice.uuid, senderDeviceId: 1, plaintext: "sealed hello" });
  });

  it("stores a sealed envelope without a sender even when the sender authenticated", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const message = await alice.sealedEncrypt(bob.uuid, 1, "identified transport", await certificateFor(server, alice));
    const res = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({ messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const row = await server.home.database.prisma.envelope.findUnique({ where: { id: res.body.envelopes[0].id } });
    assert.equal(row?.sourceAccountId, null);
    assert.equal(row?.sourceDeviceId, null);
    const [envelope] = await queued(server, bob);
    assert.equal(envelope?.sourceUuid, undefined);
    assert.equal(
      (await bob.sealedDecrypt(envelope!.content, await trustRootOf(server))).plaintext,
      "identified transport",
    );
  });

  it("answers a wrong key, a missing key, a malformed key, an account without a key and an unknown account with the same 401, and stores nothing", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const carol = await server.register(); // never sets an access key
    await setAccess(server, bob);
    await startSession(server, alice, bob);
    const message = await alice.sealedEncrypt(bob.uuid, 1, "nope", await certificateFor(server, alice));
    const body = { messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] };
    const stored = await envelopeCount(server);

    const attempts = [
      server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set(accessKeyHeader, b64(randomBytes(16)))
        .send(body),
      server.http().put(`/v1/messages/${bob.uuid}`).send(body),
      server.http().put(`/v1/messages/${bob.uuid}`).set(accessKeyHeader, "not base64 at all").send(body),
      server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set(accessKeyHeader, b64(randomBytes(15)))
        .send(body),
      server
        .http()
        .put(`/v1/messages/${carol.uuid}`)
        .set(accessKeyHeader, b64(randomBytes(16)))
        .send(body),
      server
        .http()
        .put(`/v1/messages/${randomUUID()}`)
        .set(accessKeyHeader, b64(randomBytes(16)))
        .send(body),
      server.http().put(`/v1/messages/${randomUUID()}`).send(body),
    ];
    const answers = await Promise.all(attempts);
    for (const res of answers) {
      assert.equal(res.status, 401);
      assert.deepEqual(res.body, answers[0]!.body);
    }
    assert.equal(answers[0]!.body.code, "unauthorized");
    assert.equal(await envelopeCount(server), stored);
    assert.deepEqual(await queued(server, bob), []);
  });

  it("refuses unsealed messages without credentials (400), and checks devices like any send (409, 410)", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const bobKey = await setAccess(server, bob);
    await startSession(server, alice, bob);
    const stored = await envelopeCount(server);
    const send = (messages: unknown[]) =>
      server.http().put(`/v1/messages/${bob.uuid}`).set(accessKeyHeader, b64(bobKey)).send({ messages });

    const whisper = await alice.encrypt(bob.uuid, 1, "plain session message");
    const unsealed = await send([
      { ...whisper, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId },
    ]);
    assert.equal(unsealed.status, 400);
    assert.equal(unsealed.body.code, "invalid_request");

    const sealed = await alice.sealedEncrypt(bob.uuid, 1, "x", await certificateFor(server, alice));
    const stale = await send([
      { ...sealed, destinationDeviceId: 1, destinationRegistrationId: (bob.registrationId % 16380) + 1 },
    ]);
    assert.equal(stale.status, 410);
    assert.deepEqual(stale.body.staleDevices, [1]);
    const extra = await send([
      { ...sealed, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId },
      { ...sealed, destinationDeviceId: 2, destinationRegistrationId: 7 },
    ]);
    assert.equal(extra.status, 409);
    assert.deepEqual([extra.body.missingDevices, extra.body.extraDevices], [[], [2]]);
    const garbage = await send([
      {
        type: "sealed",
        content: b64(Buffer.from("plaintext pretending to be sealed")),
        destinationDeviceId: 1,
        destinationRegistrationId: bob.registrationId,
      },
    ]);
    assert.equal(garbage.status, 400);
    assert.equal(garbage.body.code, "invalid_ciphertext");
    assert.equal(await envelopeCount(server), stored);
  });

  it("accepts without a key (or with any key) for an account with unrestricted access", async () => {
    const alice = await server.register();
    const dana = await server.register();
    await setAccess(server, dana, true);
    await startSession(server, alice, dana);
    const certificate = await certificateFor(server, alice);
    for (const header of [undefined, b64(randomBytes(16))]) {
      const message = await alice.sealedEncrypt(
        dana.uuid,
        1,
        `open door ${header ? "with" : "without"} key`,
        certificate,
      );
      const req = server.http().put(`/v1/messages/${dana.uuid}`);
      if (header) req.set(accessKeyHeader, header);
      const res = await req.send({
        messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: dana.registrationId }],
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    const trustRoot = await trustRootOf(server);
    const texts = [];
    for (const e of await queued(server, dana)) texts.push((await dana.sealedDecrypt(e.content, trustRoot)).plaintext);
    assert.deepEqual(texts, ["open door without key", "open door with key"]);
  });

  it("sends over the /sealed socket namespace with no credentials, with the same refusals", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const bobKey = await setAccess(server, bob);
    await startSession(server, alice, bob);
    const bobSocket = await server.connect(bob);
    await bobSocket.queueEmpty;
    const socket = await sealedSocket(server);
    try {
      const message = await alice.sealedEncrypt(
        bob.uuid,
        1,
        "over the sealed socket",
        await certificateFor(server, alice),
      );
      const request = {
        destination: bob.uuid,
        messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }],
      };

      const wrong = await socket.emitWithAck("send", { ...request, accessKey: b64(randomBytes(16)) });
      assert.deepEqual(wrong, {
        ok: false,
        status: 401,
        error: { code: "unauthorized", message: "Authentication failed" },
      });
      const unknown = await socket.emitWithAck("send", {
        ...request,
        destination: randomUUID(),
        accessKey: b64(randomBytes(16)),
      });
      assert.deepEqual(unknown, wrong);
      const invalid = await socket.emitWithAck("send", { ...request, accessKey: 42 } as never);
      assert.equal(invalid.ok === false && invalid.error.code, "invalid_request");

      const sent = await socket.emitWithAck("send", { ...request, accessKey: b64(bobKey) });
      assert.equal(sent.ok, true, JSON.stringify(sent));
      const [envelope] = await bobSocket.waitFor(1);
      assert.equal(envelope?.sourceUuid, undefined);
      assert.equal((await bob.sealedDecrypt(envelope!.content, await trustRootOf(server))).senderUuid, alice.uuid);
    } finally {
      socket.close();
      bobSocket.close();
    }
  });

  it("never logs the access key, the ciphertext, or who sent to whom", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const bobKey = await setAccess(server, bob);
    await startSession(server, alice, bob);
    const message = await alice.sealedEncrypt(bob.uuid, 1, "quiet", await certificateFor(server, alice));
    logs.length = 0;
    const res = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set(accessKeyHeader, b64(bobKey))
      .send({ messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] });
    assert.equal(res.status, 200);
    await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set(accessKeyHeader, b64(randomBytes(16)))
      .send({ messages: [] });
    const text = logs.join("");
    assert.ok(logs.length > 0, "the request was logged");
    for (const secret of [alice.uuid, bob.uuid, b64(bobKey), message.content.slice(0, 40)])
      assert.ok(!text.includes(secret), `logs contain ${secret.slice(0, 12)}`);
    assert.match(text, /PUT \/v1\/messages\/:uuid/);
  });
});

describe("sealed sender: rate limits per recipient", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ rateLimits: { ...roomyRateLimits, sealedSend: { points: 2, durationSeconds: 60 } } });
  });
  after(async () => server.stop());

  it("limits sends without credentials per recipient, and only after the key checked out", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const carol = await server.register();
    const bobKey = await setAccess(server, bob);
    const carolKey = await setAccess(server, carol);
    await startSession(server, alice, bob);
    await startSession(server, alice, carol);
    const certificate = await certificateFor(server, alice);
    const send = async (to: SignalDevice, key: Buffer) => {
      const message = await alice.sealedEncrypt(to.uuid, 1, "x", certificate);
      return server
        .http()
        .put(`/v1/messages/${to.uuid}`)
        .set(accessKeyHeader, b64(key))
        .send({ messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: to.registrationId }] });
    };
    // Wrong keys do not use up the recipient's allowance.
    for (let i = 0; i < 3; i++) assert.equal((await send(bob, randomBytes(16))).status, 401);
    assert.equal((await send(bob, bobKey)).status, 200);
    assert.equal((await send(bob, bobKey)).status, 200);
    const limited = await send(bob, bobKey);
    assert.equal(limited.status, 429);
    assert.equal(limited.body.code, "rate_limited");
    assert.ok(Number(limited.headers["retry-after"]) > 0);
    assert.equal((await send(carol, carolKey)).status, 200, "another recipient has its own bucket");
  });
});

describe("sealed sender: multi-recipient fan-out", () => {
  let server: TestServer;
  let trustRoot: PublicKey;
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits });
    trustRoot = await trustRootOf(server);
  });
  after(async () => server.stop());

  type Member = { devices: SignalDevice[]; key: Buffer; uuid: string };

  /** An account with two devices (the second linked with the account's identity key) and an access key. */
  async function member(): Promise<Member> {
    const primary = await server.register();
    const { device: second } = await linkDevice(server, primary);
    const key = await setAccess(server, primary);
    return { devices: [primary, second], key, uuid: primary.uuid };
  }

  /** A sender with sessions to every device of the members, and a sender certificate. */
  async function sender(members: Member[]): Promise<{ device: SignalDevice; certificate: SenderCertificate }> {
    const device = await server.register();
    for (const m of members) await startSession(server, device, m.devices[0]!);
    return { device, certificate: await certificateFor(server, device) };
  }

  const addresses = (members: Member[]): ProtocolAddress[] => members.flatMap((m) => m.devices.map((d) => d.address));
  const keysOf = (members: Member[]): MultiRecipientRequest["accessKeys"] =>
    members.map((m) => ({ uuid: m.uuid, accessKey: b64(m.key) }));

  it("fans one message out to 3 recipients x 2 devices, each device decrypts it, with no sender stored", async () => {
    const members = [await member(), await member(), await member()];
    const { device: alice, certificate } = await sender(members);
    const distributionId = randomUUID();

    // The sender key travels 1:1, sealed, to every device (sealed sends without credentials).
    const distribution = b64(await alice.senderKeyDistribution(distributionId));
    for (const m of members) {
      const messages = [];
      for (const d of m.devices) {
        messages.push({
          ...(await alice.sealedEncrypt(m.uuid, d.deviceId, distribution, certificate)),
          destinationDeviceId: d.deviceId,
          destinationRegistrationId: d.registrationId,
        });
      }
      const res = await server.http().put(`/v1/messages/${m.uuid}`).set(accessKeyHeader, b64(m.key)).send({ messages });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }

    const message = await alice.sealedMultiEncrypt(addresses(members), distributionId, "group hello", certificate);
    const res = await server
      .http()
      .put("/v1/messages/multi-recipient")
      .send({ message: b64(message), accessKeys: keysOf(members) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.recipients.length, 3);
    for (const m of members) {
      const entry = res.body.recipients.find((r: { uuid: string }) => r.uuid === m.uuid);
      assert.deepEqual(entry.envelopes.map((e: { deviceId: number }) => e.deviceId).sort(), [1, 2]);
    }
    const ids = res.body.recipients.flatMap((r: { envelopes: { id: string }[] }) => r.envelopes.map((e) => e.id));
    const rows = await server.home.database.prisma.envelope.findMany({ where: { id: { in: ids } } });
    assert.equal(rows.length, 6);
    assert.ok(rows.every((r) => r.sourceAccountId === null && r.sourceDeviceId === null && r.type === 6));

    // The second device of the first member is online: it gets the envelopes pushed.
    const online = await server.connect(members[0]!.devices[1]!);
    await online.queueEmpty;
    for (const m of members) {
      for (const d of m.devices) {
        const envelopes = d === members[0]!.devices[1] ? online.received : await queued(server, d);
        assert.equal(envelopes.length, 2, `${d.address.toString()} has the distribution and the group message`);
        assert.ok(envelopes.every((e) => e.type === "sealed" && e.sourceUuid === undefined));
        const first = await d.sealedDecrypt(envelopes[0]!.content, trustRoot);
        assert.equal(first.senderUuid, alice.uuid);
        await d.processSenderKeyDistribution(first.senderUuid, first.senderDeviceId, fromB64(first.plaintext));
        assert.deepEqual(await d.sealedGroupDecrypt(envelopes[1]!.content, trustRoot), {
          senderUuid: alice.uuid,
          senderDeviceId: 1,
          plaintext: "group hello",
        });
      }
    }

    // The same over the sealed socket (send-multi), pushed live to the online device.
    const socket = await sealedSocket(server);
    try {
      const again = await alice.sealedMultiEncrypt(addresses(members), distributionId, "again, by socket", certificate);
      const sent = await socket.emitWithAck("send-multi", { message: b64(again), accessKeys: keysOf(members) });
      assert.equal(sent.ok, true, JSON.stringify(sent));
      const pushed = await online.waitFor(3);
      assert.equal(
        (await members[0]!.devices[1]!.sealedGroupDecrypt(pushed[2]!.content, trustRoot)).plaintext,
        "again, by socket",
      );
    } finally {
      socket.close();
      online.close();
    }
  });

  it("accepts an authenticated multi-recipient send without access keys, still storing no sender", async () => {
    const members = [await member(), await member()];
    const { device: alice, certificate } = await sender(members);
    const message = await alice.sealedMultiEncrypt(addresses(members), randomUUID(), "identified", certificate);
    const res = await server
      .http()
      .put("/v1/messages/multi-recipient")
      .set("Authorization", alice.authHeader)
      .send({ message: b64(message) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const ids = res.body.recipients.flatMap((r: { envelopes: { id: string }[] }) => r.envelopes.map((e) => e.id));
    const rows = await server.home.database.prisma.envelope.findMany({ where: { id: { in: ids } } });
    assert.equal(rows.length, 4);
    assert.ok(rows.every((r) => r.sourceAccountId === null));
  });

  it("answers per-recipient 409 and 410 (410 wins), and stores nothing", async () => {
    const members = [await member(), await member(), await member()];
    const { device: alice, certificate } = await sender(members);
    const [m1, m2, m3] = members as [Member, Member, Member];
    const stored = await envelopeCount(server);
    const post = async (targets: ProtocolAddress[]) =>
      server
        .http()
        .put("/v1/messages/multi-recipient")
        .send({
          message: b64(await alice.sealedMultiEncrypt(targets, randomUUID(), "x", certificate)),
          accessKeys: keysOf(members),
        });

    // m2 and m3 each left out a device.
    const missing = await post([...addresses([m1]), m2.devices[0]!.address, m3.devices[1]!.address]);
    assert.equal(missing.status, 409, JSON.stringify(missing.body));
    assert.equal(missing.body.code, "mismatched_devices");
    assert.deepEqual(
      [...missing.body.recipients].sort((a: { uuid: string }, b: { uuid: string }) => (a.uuid < b.uuid ? -1 : 1)),
      [
        { uuid: m2.uuid, missingDevices: [2], extraDevices: [] },
        { uuid: m3.uuid, missingDevices: [1], extraDevices: [] },
      ].sort((a, b) => (a.uuid < b.uuid ? -1 : 1)),
    );

    // m1's second device re-registered (a new registration id) while m2 still misses one: 410 for m1 only.
    await server.home.database.prisma.device.update({
      where: { accountId_id: { accountId: m1.uuid, id: 2 } },
      data: { registrationId: (m1.devices[1]!.registrationId % 16380) + 1 },
    });
    const stale = await post([...addresses([m1, m3]), m2.devices[0]!.address]);
    assert.equal(stale.status, 410, JSON.stringify(stale.body));
    assert.deepEqual(stale.body, {
      code: "stale_devices",
      message: stale.body.message,
      recipients: [{ uuid: m1.uuid, staleDevices: [2] }],
    });

    // An extra device: m3 lost its second device since the sender's last look.
    await server.home.database.prisma.device.delete({ where: { accountId_id: { accountId: m3.uuid, id: 2 } } });
    await server.home.database.prisma.device.update({
      where: { accountId_id: { accountId: m1.uuid, id: 2 } },
      data: { registrationId: m1.devices[1]!.registrationId },
    });
    const extra = await post(addresses(members));
    assert.equal(extra.status, 409);
    assert.deepEqual(extra.body.recipients, [{ uuid: m3.uuid, missingDevices: [], extraDevices: [2] }]);

    assert.equal(await envelopeCount(server), stored);
  });

  it("refuses without every recipient's key (401), unknown recipients (401, or 404 when authenticated), and garbage (400), storing nothing", async () => {
    const members = [await member(), await member()];
    const [m1, m2] = members as [Member, Member];
    const gone = await member();
    const { device: alice, certificate } = await sender([...members, gone]);
    const open = await member();
    await setAccess(server, open.devices[0]!, true);
    await startSession(server, alice, open.devices[0]!);
    const stored = await envelopeCount(server);
    const message = b64(await alice.sealedMultiEncrypt(addresses(members), randomUUID(), "x", certificate));
    const put = (body: unknown, auth?: string) => {
      const req = server.http().put("/v1/messages/multi-recipient");
      if (auth) req.set("Authorization", auth);
      return req.send(body as object);
    };

    const noKeys = await put({ message });
    const oneMissing = await put({ message, accessKeys: [{ uuid: m1.uuid, accessKey: b64(m1.key) }] });
    const oneWrong = await put({
      message,
      accessKeys: [
        { uuid: m1.uuid, accessKey: b64(m1.key) },
        { uuid: m2.uuid, accessKey: b64(randomBytes(16)) },
      ],
    });
    for (const res of [noKeys, oneMissing, oneWrong]) {
      assert.equal(res.status, 401);
      assert.deepEqual(res.body, noKeys.body);
    }
    const duplicate = await put({
      message,
      accessKeys: [...keysOf(members)!, { uuid: m1.uuid, accessKey: b64(m1.key) }],
    });
    assert.equal(duplicate.status, 400);

    // An unrestricted recipient needs no key; the others still do.
    const withOpen = b64(
      await alice.sealedMultiEncrypt([...addresses([m1]), ...addresses([open])], randomUUID(), "x", certificate),
    );
    assert.equal(
      (await put({ message: withOpen, accessKeys: [{ uuid: open.uuid, accessKey: b64(randomBytes(16)) }] })).status,
      401,
    );
    const stillStored = await envelopeCount(server);
    assert.equal(stillStored, stored);

    // A recipient whose account is gone: 401 without credentials, 404 naming it with them.
    await server.home.database.prisma.account.delete({ where: { id: gone.uuid } });
    const withGone = b64(
      await alice.sealedMultiEncrypt([...addresses([m1]), ...addresses([gone])], randomUUID(), "x", certificate),
    );
    const anonymous = await put({ message: withGone, accessKeys: keysOf([m1, gone]) });
    assert.equal(anonymous.status, 401);
    assert.deepEqual(anonymous.body, noKeys.body);
    const identified = await put({ message: withGone }, alice.authHeader);
    assert.equal(identified.status, 404);
    assert.deepEqual(identified.body.recipients, [{ uuid: gone.uuid }]);

    // Bytes libsignal cannot parse, with or without credentials.
    const bytes = Buffer.from(message, "base64");
    for (const garbage of [
      randomBytes(200),
      Buffer.from("plaintext is not a multi-recipient message"),
      bytes.subarray(0, 10),
      Buffer.concat([Buffer.of(0x11), bytes.subarray(1)]),
    ]) {
      for (const auth of [undefined, alice.authHeader]) {
        const res = await put({ message: b64(garbage), accessKeys: keysOf(members) }, auth);
        assert.equal(res.status, 400, `${res.status} ${JSON.stringify(res.body)}`);
        assert.equal(res.body.code, "invalid_ciphertext");
      }
    }
    assert.equal((await put({ message: "!!", accessKeys: keysOf(members) })).body.code, "invalid_request");
    assert.equal(await envelopeCount(server), stored);

    // With m1's key, the unrestricted recipient needs none.
    const accepted = await put({ message: withOpen, accessKeys: [{ uuid: m1.uuid, accessKey: b64(m1.key) }] });
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    assert.equal(await envelopeCount(server), stored + 4);
  });
});
