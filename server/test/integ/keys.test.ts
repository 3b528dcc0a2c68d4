/**
 * The key directory (semantics like Signal-Server's): uploads, counts,
 * signature checks, bundle fetches that hand out each one-time key once,
 * concurrent claims, the per-requester rate limit, and a real PQXDH session
 * from a fetched bundle. Runs on SQLite, and on PostgreSQL when
 * ZIMCHAT_TEST_DATABASE_URL names one.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { KEMKeyPair, PrivateKey } from "@signalapp/libsignal-client";
import type { DeviceBundle, PreKeyBundleResponse, SignedKyberPreKey, UploadKeysRequest } from "@zimchat/protocol";
import { defaultRateLimits, type RateLimits } from "../../src/index.js";
import {
  linkDevice,
  encryptFor,
  signedEc,
  signedKyber,
  startServer,
  type SignedKey,
  type TestServer,
} from "../support/harness.js";
import { SignalDevice } from "@zimchat/testing/signal";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/** Default limits, but enough registrations for one test file from one address. */
const roomyLimits: RateLimits = { ...defaultRateLimits, register: { points: 10_000, durationSeconds: 3600 } };

/** Signs arbitrary key bytes (for keys of the wrong type or length). */
function signedBytes(signer: PrivateKey, keyId: number, bytes: Uint8Array): SignedKey {
  return { keyId, publicKey: b64(bytes), signature: b64(signer.sign(new Uint8Array(bytes))) };
}

/** Flips the low bit of one byte (negative index counts from the end). */
function flip(base64: string, index: number): string {
  const bytes = Buffer.from(base64, "base64");
  const i = (index + bytes.length) % bytes.length;
  bytes[i] = bytes[i]! ^ 0x01;
  return bytes.toString("base64");
}

/** `bytes` with its first (type) byte replaced. */
function withTypeByte(base64: string, type: number): Uint8Array {
  const bytes = new Uint8Array(Buffer.from(base64, "base64"));
  bytes[0] = type;
  return bytes;
}

async function counts(server: TestServer, device: SignalDevice): Promise<{ ecCount: number; pqCount: number }> {
  const res = await server.http().get("/v1/keys/count").set("Authorization", device.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as { ecCount: number; pqCount: number };
}

async function upload(server: TestServer, device: SignalDevice, body: unknown): Promise<{ status: number; body: any }> {
  const res = await server
    .http()
    .put("/v1/keys")
    .set("Authorization", device.authHeader)
    .send(body as object);
  return { status: res.status, body: res.body };
}

async function fetchBundle(
  server: TestServer,
  from: SignalDevice,
  to: string,
  device: string | number = 1,
): Promise<PreKeyBundleResponse> {
  const res = await server.http().get(`/v1/keys/${to}/${device}`).set("Authorization", from.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as PreKeyBundleResponse;
}

function only(bundle: PreKeyBundleResponse): DeviceBundle {
  assert.equal(bundle.devices.length, 1);
  return bundle.devices[0]!;
}

/**
 * Adds device `deviceId` to `owner`'s account directly in the database (the
 * protocol has no linking route yet), with a signed pre-key and a Kyber
 * last-resort key signed by the account's identity key. The returned device
 * authenticates with its own password; its keys are signed by the owner.
 */
describe("key upload and counts", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ rateLimits: roomyLimits });
  });
  after(async () => server.stop());

  it("a new device has no one-time keys; an upload of 100 of each kind is counted", async () => {
    const bob = await server.register();
    assert.deepEqual(await counts(server, bob), { ecCount: 0, pqCount: 0 });
    const res = await upload(server, bob, bob.keyUpload(100, 100));
    assert.equal(res.status, 204, JSON.stringify(res.body));
    assert.deepEqual(await counts(server, bob), { ecCount: 100, pqCount: 100 });
  });

  it("an upload replaces the stored one-time keys of its kind and leaves the other kind alone", async () => {
    const alice = await server.register();
    const bob = await server.register();
    assert.equal((await upload(server, bob, bob.keyUpload(5, 7))).status, 204);
    assert.deepEqual(await counts(server, bob), { ecCount: 5, pqCount: 7 });

    const newEc = { preKeys: [bob.ecPreKey(), bob.ecPreKey(), bob.ecPreKey()] };
    assert.equal((await upload(server, bob, newEc)).status, 204);
    assert.deepEqual(await counts(server, bob), { ecCount: 3, pqCount: 7 });

    const newPq = { pqPreKeys: [bob.kyberPreKey(), bob.kyberPreKey()] };
    assert.equal((await upload(server, bob, newPq)).status, 204);
    assert.deepEqual(await counts(server, bob), { ecCount: 3, pqCount: 2 });

    // Only keys from the latest uploads are handed out, then null / the last-resort key.
    const handed = [];
    for (let i = 0; i < 4; i++) handed.push(only(await fetchBundle(server, alice, bob.uuid)));
    assert.deepEqual(
      handed.map((d) => d.preKey?.keyId ?? null).sort(),
      [...newEc.preKeys.map((k) => k.keyId), null].sort(),
    );
    const lastResort = handed[3]!.pqPreKey;
    assert.deepEqual(
      handed.slice(0, 2).map((d) => d.pqPreKey),
      newPq.pqPreKeys.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, signature: k.signature })),
    );
    assert.deepEqual(handed[2]!.pqPreKey, lastResort);
    assert.ok(!newPq.pqPreKeys.some((k) => k.keyId === lastResort.keyId));
    assert.deepEqual(await counts(server, bob), { ecCount: 0, pqCount: 0 });
  });

  it("an upload replaces the signed pre-key and the Kyber last-resort key", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const before = only(await fetchBundle(server, alice, bob.uuid));
    const signedPreKey = bob.signedPreKey();
    const pqLastResortPreKey = bob.kyberPreKey();
    assert.equal((await upload(server, bob, { signedPreKey, pqLastResortPreKey })).status, 204);
    assert.deepEqual(await counts(server, bob), { ecCount: 0, pqCount: 0 });

    const after = only(await fetchBundle(server, alice, bob.uuid));
    assert.notDeepEqual(after.signedPreKey, before.signedPreKey);
    assert.deepEqual(after.signedPreKey, signedPreKey);
    assert.deepEqual(after.pqPreKey, pqLastResortPreKey);
    assert.equal(after.preKey, null);
  });

  it("accepts key ids 0 and 2^31-1", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const ec = [
      { ...bob.ecPreKey(), keyId: 0 },
      { ...bob.ecPreKey(), keyId: 2 ** 31 - 1 },
    ];
    const pq = [signedKyber(bob.identity, 0), signedKyber(bob.identity, 2 ** 31 - 1)];
    const res = await upload(server, bob, {
      signedPreKey: signedEc(bob.identity, 2 ** 31 - 1),
      pqLastResortPreKey: signedKyber(bob.identity, 0),
      preKeys: ec,
      pqPreKeys: pq,
    });
    assert.equal(res.status, 204, JSON.stringify(res.body));
    const handed = [only(await fetchBundle(server, alice, bob.uuid)), only(await fetchBundle(server, alice, bob.uuid))];
    assert.deepEqual(
      handed.map((d) => d.preKey).sort((a, b) => a!.keyId - b!.keyId),
      ec,
    );
    assert.deepEqual(
      handed.map((d) => d.pqPreKey).sort((a, b) => a.keyId - b.keyId),
      pq,
    );
    assert.equal(handed[0]!.signedPreKey.keyId, 2 ** 31 - 1);
  });

  it("a bad signature on any signed key refuses the whole upload with 422 invalid_signature and stores nothing", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const stranger = PrivateKey.generate();
    const original = only(await fetchBundle(server, alice, bob.uuid));
    const originalLastResort = original.pqPreKey;
    const baseline = bob.keyUpload(3, 4);
    assert.equal((await upload(server, bob, baseline)).status, 204);

    // Every request also carries valid parts that would change state if stored.
    const valid = (): Required<UploadKeysRequest> => ({
      signedPreKey: signedEc(bob.identity, 500),
      pqLastResortPreKey: signedKyber(bob.identity, 501),
      ...(bob.keyUpload(100, 100) as Required<Pick<UploadKeysRequest, "preKeys" | "pqPreKeys">>),
    });
    const cases: [string, (body: Required<UploadKeysRequest>) => void][] = [
      ["signedPreKey signed by another identity key", (b) => void (b.signedPreKey = signedEc(stranger, 500))],
      [
        "signedPreKey signature with one flipped byte",
        (b) => void (b.signedPreKey.signature = flip(b.signedPreKey.signature, 10)),
      ],
      [
        "signedPreKey public key with one flipped byte",
        (b) => void (b.signedPreKey.publicKey = flip(b.signedPreKey.publicKey, 5)),
      ],
      [
        "signedPreKey signature of another key",
        (b) => void (b.signedPreKey.signature = signedEc(bob.identity, 1).signature),
      ],
      [
        "pqLastResortPreKey signed by another identity key",
        (b) => void (b.pqLastResortPreKey = signedKyber(stranger, 501)),
      ],
      [
        "pqLastResortPreKey signature with one flipped byte",
        (b) => void (b.pqLastResortPreKey.signature = flip(b.pqLastResortPreKey.signature, -1)),
      ],
      [
        "pqPreKeys[0] signed by another identity key",
        (b) => void (b.pqPreKeys[0] = signedKyber(stranger, b.pqPreKeys[0]!.keyId)),
      ],
      [
        "pqPreKeys[57] signed by another identity key",
        (b) => void (b.pqPreKeys[57] = signedKyber(stranger, b.pqPreKeys[57]!.keyId)),
      ],
      [
        "pqPreKeys[99] signature with one flipped byte",
        (b) => void (b.pqPreKeys[99]!.signature = flip(b.pqPreKeys[99]!.signature, 0)),
      ],
      [
        "pqPreKeys[42] signed by the signed pre-key instead of the identity key",
        (b) => {
          const pub = KEMKeyPair.generate().getPublicKey().serialize();
          b.pqPreKeys[42] = {
            keyId: b.pqPreKeys[42]!.keyId,
            publicKey: b64(pub),
            signature: b64(PrivateKey.generate().sign(pub)),
          };
        },
      ],
    ];
    for (const [name, spoil] of cases) {
      const body = valid();
      spoil(body);
      const res = await upload(server, bob, body);
      assert.equal(res.status, 422, `${name}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, "invalid_signature", name);
      assert.deepEqual(await counts(server, bob), { ecCount: 3, pqCount: 4 }, name);
    }

    // The device still hands out exactly the baseline: old signed pre-key, baseline one-time keys, old last-resort key.
    const handed: DeviceBundle[] = [];
    for (let i = 0; i < 5; i++) handed.push(only(await fetchBundle(server, alice, bob.uuid)));
    for (const d of handed) assert.deepEqual(d.signedPreKey, original.signedPreKey);
    assert.deepEqual(
      handed.map((d) => d.preKey?.keyId ?? null),
      [...baseline.preKeys!.map((k) => k.keyId), null, null],
    );
    assert.deepEqual(
      handed.map((d) => d.pqPreKey),
      [...baseline.pqPreKeys!, originalLastResort],
    );
  });

  it("a key of the wrong type or length, a key id out of range or too many keys is refused with its code and stores nothing", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const original = only(await fetchBundle(server, alice, bob.uuid));
    const baseline = bob.keyUpload(2, 2);
    assert.equal((await upload(server, bob, baseline)).status, 204);

    const ecKey = signedEc(bob.identity, 700);
    const kyberKey = signedKyber(bob.identity, 701);
    const valid = (): Required<UploadKeysRequest> => ({
      signedPreKey: signedEc(bob.identity, 600),
      pqLastResortPreKey: signedKyber(bob.identity, 601),
      ...(bob.keyUpload(5, 5) as Required<Pick<UploadKeysRequest, "preKeys" | "pqPreKeys">>),
    });
    type Body = Record<string, any>;
    const badIds: unknown[] = [-1, 2 ** 31, 1.5, "1", null, 1e100];
    const cases: [string, number, string, (b: Body) => void][] = [
      ["an EC key as pqLastResortPreKey", 400, "invalid_request", (b) => void (b.pqLastResortPreKey = ecKey)],
      ["an EC key in pqPreKeys", 400, "invalid_request", (b) => void (b.pqPreKeys[2] = ecKey)],
      ["a Kyber key as signedPreKey", 400, "invalid_request", (b) => void (b.signedPreKey = kyberKey)],
      [
        "a Kyber key in preKeys",
        400,
        "invalid_request",
        (b) => void (b.preKeys[1] = { keyId: 702, publicKey: kyberKey.publicKey }),
      ],
      [
        "a 32-byte key in preKeys",
        400,
        "invalid_request",
        (b) =>
          void (b.preKeys[0].publicKey = b64(
            new Uint8Array(Buffer.from(b.preKeys[0].publicKey, "base64")).subarray(1),
          )),
      ],
      [
        "a 32-byte signedPreKey",
        400,
        "invalid_request",
        (b) =>
          void (b.signedPreKey = signedBytes(bob.identity, 600, Buffer.from(ecKey.publicKey, "base64").subarray(1))),
      ],
      [
        "a 1568-byte Kyber key",
        400,
        "invalid_request",
        (b) =>
          void (b.pqPreKeys[0] = signedBytes(bob.identity, 703, Buffer.from(kyberKey.publicKey, "base64").subarray(1))),
      ],
      [
        "a 64-byte signature cut to 63",
        400,
        "invalid_request",
        (b) => void (b.signedPreKey.signature = b64(Buffer.from(b.signedPreKey.signature, "base64").subarray(1))),
      ],
      [
        "an EC key with type byte 0x06 in preKeys",
        400,
        "invalid_key",
        (b) => void (b.preKeys[3].publicKey = b64(withTypeByte(b.preKeys[3].publicKey, 0x06))),
      ],
      [
        "a signedPreKey with type byte 0x08 (signed as such)",
        400,
        "invalid_key",
        (b) => void (b.signedPreKey = signedBytes(bob.identity, 600, withTypeByte(ecKey.publicKey, 0x08))),
      ],
      [
        "a Kyber key with type byte 0x05 in pqPreKeys (signed as such)",
        400,
        "invalid_key",
        (b) => void (b.pqPreKeys[4] = signedBytes(bob.identity, 704, withTypeByte(kyberKey.publicKey, 0x05))),
      ],
      [
        "a pqLastResortPreKey with type byte 0x00 (signed as such)",
        400,
        "invalid_key",
        (b) => void (b.pqLastResortPreKey = signedBytes(bob.identity, 601, withTypeByte(kyberKey.publicKey, 0x00))),
      ],
      ...badIds.flatMap((id): [string, number, string, (b: Body) => void][] => [
        [`preKeys[0].keyId ${JSON.stringify(id)}`, 400, "invalid_request", (b) => void (b.preKeys[0].keyId = id)],
        [`pqPreKeys[1].keyId ${JSON.stringify(id)}`, 400, "invalid_request", (b) => void (b.pqPreKeys[1].keyId = id)],
        [`signedPreKey.keyId ${JSON.stringify(id)}`, 400, "invalid_request", (b) => void (b.signedPreKey.keyId = id)],
        [
          `pqLastResortPreKey.keyId ${JSON.stringify(id)}`,
          400,
          "invalid_request",
          (b) => void (b.pqLastResortPreKey.keyId = id),
        ],
      ]),
      ["101 one-time EC keys", 400, "invalid_request", (b) => void (b.preKeys = bob.keyUpload(101, 0).preKeys)],
      ["101 one-time Kyber keys", 400, "invalid_request", (b) => void (b.pqPreKeys = bob.keyUpload(0, 101).pqPreKeys)],
      ["a repeated EC keyId", 400, "invalid_request", (b) => void (b.preKeys[4].keyId = b.preKeys[0].keyId)],
      [
        "a repeated Kyber keyId",
        400,
        "invalid_request",
        (b) => void (b.pqPreKeys[4] = signedKyber(bob.identity, b.pqPreKeys[0].keyId)),
      ],
      [
        "a one-time EC key with a signature field",
        400,
        "invalid_request",
        (b) => void (b.preKeys[0].signature = ecKey.signature),
      ],
    ];
    for (const [name, status, code, spoil] of cases) {
      const body: Body = valid();
      spoil(body);
      const res = await upload(server, bob, body);
      assert.equal(res.status, status, `${name}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, code, name);
      assert.deepEqual(await counts(server, bob), { ecCount: 2, pqCount: 2 }, name);
    }
    const first = only(await fetchBundle(server, alice, bob.uuid));
    assert.deepEqual(first.signedPreKey, original.signedPreKey);
    assert.equal(first.preKey?.keyId, baseline.preKeys![0]!.keyId);
    assert.deepEqual(first.pqPreKey, baseline.pqPreKeys![0]);
  });

  it("keys of another device are signed by the same account identity key", async () => {
    const bob = await server.register();
    const { device: bob2 } = await linkDevice(server, bob);
    // A key signed by anything but the account's identity key does not count, whichever device uploads it.
    const foreign = await upload(server, bob2, { pqPreKeys: [signedKyber(PrivateKey.generate(), 1)] });
    assert.equal(foreign.status, 422, JSON.stringify(foreign.body));
    assert.equal(foreign.body.code, "invalid_signature");
    const res = await upload(server, bob2, {
      preKeys: [bob.ecPreKey()],
      pqPreKeys: [signedKyber(bob.identity, 1), signedKyber(bob.identity, 2)],
    });
    assert.equal(res.status, 204, JSON.stringify(res.body));
    assert.deepEqual(await counts(server, bob2), { ecCount: 1, pqCount: 2 });
    assert.deepEqual(await counts(server, bob), { ecCount: 0, pqCount: 0 });
  });

  it("refuses uploads and counts without valid credentials (401 unauthorized)", async () => {
    const bob = await server.register();
    const noAuth = await server.http().put("/v1/keys").send(bob.keyUpload(1, 1));
    assert.equal(noAuth.status, 401);
    assert.equal(noAuth.body.code, "unauthorized");
    const wrong = `Basic ${Buffer.from(`${bob.uuid}.1:${"x".repeat(24)}`).toString("base64")}`;
    const badAuth = await server.http().put("/v1/keys").set("Authorization", wrong).send(bob.keyUpload(1, 1));
    assert.equal(badAuth.status, 401);
    assert.equal(badAuth.body.code, "unauthorized");
    const count = await server.http().get("/v1/keys/count").set("Authorization", wrong);
    assert.equal(count.status, 401);
    assert.equal(count.body.code, "unauthorized");
    assert.deepEqual(await counts(server, bob), { ecCount: 0, pqCount: 0 });
  });
});

describe("pre-key bundles", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ rateLimits: roomyLimits });
  });
  after(async () => server.stop());

  it("one device: identity key, registration id, signed pre-key, each one-time key once, then null EC and the last-resort Kyber key", async () => {
    const alice = await server.register();
    const carol = await server.register();
    const bob = await server.register();
    const registered = only(await fetchBundle(server, alice, bob.uuid));
    const keys = bob.keyUpload(2, 3);
    assert.equal((await upload(server, bob, keys)).status, 204);

    const bundles: PreKeyBundleResponse[] = [];
    for (const from of [alice, carol, alice, carol, alice]) bundles.push(await fetchBundle(server, from, bob.uuid, 1));
    for (const bundle of bundles) {
      assert.deepEqual(Object.keys(bundle).sort(), ["devices", "identityKey"]);
      assert.equal(bundle.identityKey, b64(bob.identity.getPublicKey().serialize()));
      const d = only(bundle);
      assert.equal(d.deviceId, 1);
      assert.equal(d.registrationId, bob.registrationId);
      assert.deepEqual(d.signedPreKey, registered.signedPreKey);
      // The signed pre-key is the one bob holds the private key for.
      assert.ok(bob.signedPreKeys.records.has(d.signedPreKey.keyId));
    }
    const devices = bundles.map(only);
    assert.deepEqual(
      devices.map((d) => d.preKey),
      [...keys.preKeys!, null, null, null],
    );
    assert.deepEqual(
      devices.map((d) => d.pqPreKey),
      [...keys.pqPreKeys!, registered.pqPreKey, registered.pqPreKey],
    );
    assert.ok(
      !keys.pqPreKeys!.some((k) => k.keyId === registered.pqPreKey.keyId),
      "the first bundle carried the last-resort key",
    );
    assert.deepEqual(await counts(server, bob), { ecCount: 0, pqCount: 0 });
  });

  it("all devices (*): one entry per device, each with its own keys, each one-time key once", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const { device: bob2, signedPreKey: signed2, lastResort: lastResort2 } = await linkDevice(server, bob);
    const keys1 = bob.keyUpload(1, 1);
    assert.equal((await upload(server, bob, keys1)).status, 204);
    const keys2 = { preKeys: [bob.ecPreKey(), bob.ecPreKey()], pqPreKeys: [signedKyber(bob.identity, 11)] };
    assert.equal((await upload(server, bob2, keys2)).status, 204);

    const first = await fetchBundle(server, alice, bob.uuid, "*");
    const second = await fetchBundle(server, alice, bob.uuid, "*");
    const third = await fetchBundle(server, alice, bob.uuid, "*");
    for (const bundle of [first, second, third]) {
      assert.equal(bundle.identityKey, b64(bob.identity.getPublicKey().serialize()));
      assert.deepEqual(
        bundle.devices.map((d) => [d.deviceId, d.registrationId]),
        [
          [1, bob.registrationId],
          [2, bob2.registrationId],
        ],
      );
      assert.deepEqual(bundle.devices[1]!.signedPreKey, signed2);
    }
    const dev = (b: PreKeyBundleResponse, id: number): DeviceBundle => b.devices.find((d) => d.deviceId === id)!;
    assert.deepEqual(
      [first, second, third].map((b) => dev(b, 1).preKey),
      [keys1.preKeys![0], null, null],
    );
    assert.deepEqual(
      [first, second, third].map((b) => dev(b, 2).preKey),
      [keys2.preKeys[0], keys2.preKeys[1], null],
    );
    assert.deepEqual(dev(first, 1).pqPreKey, keys1.pqPreKeys![0]);
    assert.deepEqual(dev(second, 1).pqPreKey, dev(third, 1).pqPreKey);
    assert.deepEqual(
      [first, second, third].map((b) => dev(b, 2).pqPreKey),
      [keys2.pqPreKeys[0], lastResort2, lastResort2],
    );

    // Fetching one device claims only that device's keys.
    assert.equal((await upload(server, bob, { preKeys: [bob.ecPreKey()] })).status, 204);
    assert.equal((await upload(server, bob2, { preKeys: [bob.ecPreKey()] })).status, 204);
    const one = await fetchBundle(server, alice, bob.uuid, 2);
    assert.deepEqual(
      one.devices.map((d) => d.deviceId),
      [2],
    );
    assert.deepEqual(await counts(server, bob), { ecCount: 1, pqCount: 0 });
    assert.deepEqual(await counts(server, bob2), { ecCount: 0, pqCount: 0 });
  });

  it("unknown account or device: 404 not_found, and nothing is claimed", async () => {
    const alice = await server.register();
    const bob = await server.register();
    assert.equal((await upload(server, bob, bob.keyUpload(1, 1))).status, 204);
    for (const path of [
      `/v1/keys/${randomUUID()}/1`,
      `/v1/keys/${randomUUID()}/*`,
      `/v1/keys/${bob.uuid}/2`,
      `/v1/keys/${bob.uuid}/127`,
    ]) {
      const res = await server.http().get(path).set("Authorization", alice.authHeader);
      assert.equal(res.status, 404, `${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, "not_found", path);
    }
    assert.deepEqual(await counts(server, bob), { ecCount: 1, pqCount: 1 });
  });

  it("unauthenticated or wrongly authenticated fetches: 401 unauthorized, and nothing is claimed", async () => {
    const bob = await server.register();
    assert.equal((await upload(server, bob, bob.keyUpload(1, 1))).status, 204);
    const wrong = `Basic ${Buffer.from(`${bob.uuid}.1:${"A".repeat(24)}`).toString("base64")}`;
    for (const device of ["1", "*"]) {
      const none = await server.http().get(`/v1/keys/${bob.uuid}/${device}`);
      assert.equal(none.status, 401);
      assert.equal(none.body.code, "unauthorized");
      const bad = await server.http().get(`/v1/keys/${bob.uuid}/${device}`).set("Authorization", wrong);
      assert.equal(bad.status, 401);
      assert.equal(bad.body.code, "unauthorized");
    }
    assert.deepEqual(await counts(server, bob), { ecCount: 1, pqCount: 1 });
  });

  it("a PQXDH session from a fetched bundle works, with one-time keys and with the last-resort key alone", async () => {
    const alice = await server.register();
    const carol = await server.register();
    const bob = await server.register();
    assert.equal((await upload(server, bob, bob.keyUpload(1, 1))).status, 204);

    // Alice gets the one-time keys.
    const forAlice = await fetchBundle(server, alice, bob.uuid);
    const used = only(forAlice);
    assert.ok(used.preKey);
    await alice.processBundle(bob.uuid, forAlice);
    // Carol gets no one-time EC key and the last-resort Kyber key.
    const forCarol = await fetchBundle(server, carol, bob.uuid);
    assert.equal(only(forCarol).preKey, null);
    await carol.processBundle(bob.uuid, forCarol);

    const bobDevices = { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] };
    for (const [sender, text] of [
      [alice, "Mhoro Bob, from Alice"],
      [carol, "Carol, with the last-resort key"],
    ] as const) {
      const messages = await encryptFor(sender, bobDevices, text);
      assert.equal(messages[0]!.type, "prekey");
      const sent = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", sender.authHeader)
        .send({ messages });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
    }
    const fetched = await server.http().get("/v1/messages").set("Authorization", bob.authHeader);
    assert.equal(fetched.status, 200);
    const envelopes = fetched.body.envelopes as {
      sourceUuid: string;
      sourceDeviceId: number;
      type: "prekey" | "whisper";
      content: string;
    }[];
    assert.equal(envelopes.length, 2);
    assert.ok(bob.preKeys.records.has(used.preKey.keyId));
    assert.equal(await bob.decrypt(alice.uuid, 1, envelopes[0]!.type, envelopes[0]!.content), "Mhoro Bob, from Alice");
    // libsignal consumed the one-time key the server handed to Alice.
    assert.ok(!bob.preKeys.records.has(used.preKey.keyId));
    assert.equal(
      await bob.decrypt(carol.uuid, 1, envelopes[1]!.type, envelopes[1]!.content),
      "Carol, with the last-resort key",
    );
  });
});

describe("concurrent bundle fetches", () => {
  let server: TestServer;
  before(async () => {
    // Limits off: this test is about claims, not the rate limit (tested below).
    server = await startServer({ rateLimits: false });
  });
  after(async () => server.stop());

  it("100 concurrent fetches against 50 + 50 one-time keys hand out each key exactly once", async () => {
    const bob = await server.register();
    const requesters = await Promise.all(Array.from({ length: 5 }, () => server.register()));
    const registered = only(await fetchBundle(server, requesters[0]!, bob.uuid));
    const lastResort: SignedKyberPreKey = registered.pqPreKey;
    const keys = bob.keyUpload(50, 50);
    assert.equal((await upload(server, bob, keys)).status, 204);
    assert.deepEqual(await counts(server, bob), { ecCount: 50, pqCount: 50 });

    const responses = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        server
          .http()
          .get(`/v1/keys/${bob.uuid}/1`)
          .set("Authorization", requesters[i % requesters.length]!.authHeader),
      ),
    );
    for (const res of responses) assert.equal(res.status, 200, JSON.stringify(res.body));
    const devices = responses.map((res) => only(res.body as PreKeyBundleResponse));

    const ec = devices.flatMap((d) => (d.preKey ? [d.preKey] : []));
    assert.equal(ec.length, 50, "bundles with a one-time EC key");
    assert.equal(new Set(ec.map((k) => k.keyId)).size, 50, "distinct EC keys");
    assert.deepEqual(
      ec.sort((a, b) => a.keyId - b.keyId),
      [...keys.preKeys!].sort((a, b) => a.keyId - b.keyId),
    );
    assert.equal(devices.filter((d) => d.preKey === null).length, 50, "bundles without a one-time EC key");

    const oneTimePq = devices.filter((d) => d.pqPreKey.keyId !== lastResort.keyId).map((d) => d.pqPreKey);
    assert.equal(oneTimePq.length, 50, "bundles with a one-time Kyber key");
    assert.equal(new Set(oneTimePq.map((k) => k.keyId)).size, 50, "distinct Kyber keys");
    assert.deepEqual(
      oneTimePq.sort((a, b) => a.keyId - b.keyId),
      [...keys.pqPreKeys!].sort((a, b) => a.keyId - b.keyId),
    );
    const fallbacks = devices.filter((d) => d.pqPreKey.keyId === lastResort.keyId);
    assert.equal(fallbacks.length, 50, "bundles with the last-resort Kyber key");
    for (const d of fallbacks) assert.deepEqual(d.pqPreKey, lastResort);
    for (const d of devices) assert.deepEqual(d.signedPreKey, registered.signedPreKey);

    assert.deepEqual(await counts(server, bob), { ecCount: 0, pqCount: 0 });
  });

  it("concurrent all-device fetches and an upload racing them never hand out a key twice", async () => {
    const bob = await server.register();
    const requester = await server.register();
    const first = bob.keyUpload(20, 20);
    assert.equal((await upload(server, bob, first)).status, 204);
    const second = bob.keyUpload(20, 20);
    const [uploaded, ...responses] = await Promise.all([
      upload(server, bob, second),
      ...Array.from({ length: 30 }, () =>
        server.http().get(`/v1/keys/${bob.uuid}/*`).set("Authorization", requester.authHeader),
      ),
    ]);
    assert.equal(uploaded.status, 204);
    const ecIds = responses.flatMap((res) => {
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const d = only(res.body as PreKeyBundleResponse);
      return d.preKey ? [d.preKey.keyId] : [];
    });
    assert.equal(new Set(ecIds).size, ecIds.length, "an EC key was handed out twice");
    // Whatever was not handed out of the second upload is still there; nothing of the first survives.
    const left = await counts(server, bob);
    const handedFromSecond = ecIds.filter((id) => second.preKeys!.some((k) => k.keyId === id)).length;
    assert.equal(left.ecCount, 20 - handedFromSecond);
  });
});

describe("bundle fetch rate limit", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ rateLimits: { ...roomyLimits, preKeyBundle: { points: 3, durationSeconds: 60 } } });
  });
  after(async () => server.stop());

  it("a requester over the limit for one target gets 429 rate_limited with Retry-After, and claims nothing", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const carol = await server.register();
    const dave = await server.register();
    assert.equal((await upload(server, bob, bob.keyUpload(10, 10))).status, 204);

    for (let i = 0; i < 3; i++) await fetchBundle(server, alice, bob.uuid, i === 1 ? "*" : 1);
    assert.deepEqual(await counts(server, bob), { ecCount: 7, pqCount: 7 });

    for (const device of ["1", "*"]) {
      const limited = await server.http().get(`/v1/keys/${bob.uuid}/${device}`).set("Authorization", alice.authHeader);
      assert.equal(limited.status, 429, JSON.stringify(limited.body));
      assert.equal(limited.body.code, "rate_limited");
      const retryAfter = limited.headers["retry-after"];
      assert.match(String(retryAfter), /^[1-9][0-9]*$/);
      assert.ok(Number(retryAfter) <= 60, `Retry-After ${retryAfter}`);
      assert.equal(limited.body.retryAfterSeconds, Number(retryAfter));
    }
    assert.deepEqual(await counts(server, bob), { ecCount: 7, pqCount: 7 }, "a refused fetch claimed a key");

    // The limit is per requester and target.
    await fetchBundle(server, alice, carol.uuid);
    await fetchBundle(server, dave, bob.uuid);
    assert.deepEqual(await counts(server, bob), { ecCount: 6, pqCount: 6 });
  });
});
