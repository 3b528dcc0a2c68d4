import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { sign } from "node:crypto";
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import canonicalize from "canonicalize";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serverDocumentPath, serverDocumentSchema, type ServerDocument } from "@zimchat/protocol";
import { KeyFileError } from "../../src/services/key-files.js";
import { ServerDocumentService, verifyServerDocument } from "../../src/federation/server-document.js";
import {
  federationKeyDirectory,
  identityFingerprint,
  keyIdOf,
  loadIdentityKey,
  loadSigningKeys,
  rotationOverlapMs,
  rotationPeriodMs,
} from "../../src/federation/signing-keys.js";
import { federated } from "../support/federation.js";
import { startServer, type TestServer } from "../support/harness.js";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));

/** The fingerprint of a document's identity key. */
const fingerprintOf = (document: ServerDocument): string =>
  identityFingerprint(Buffer.from(document.identityKey, "base64"));

describe("the federation server document", () => {
  let club: TestServer;
  let island: TestServer;
  before(async () => {
    club = await startServer({ serverName: "club.example", federation: "open" });
    island = await startServer();
  });
  after(async () => {
    await club.stop();
    await island.stop();
  });

  it("is not served while federation is off (the default)", async () => {
    const res = await island.http().get(serverDocumentPath);
    assert.equal(res.status, 404);
    assert.equal(res.body.code, "not_found");
    assert.equal(island.config.federation, "off");
  });

  it("names the server, its identity key, its request-signing key and its trust root, signed by the identity key", async () => {
    const res = await club.http().get(serverDocumentPath);
    assert.equal(res.status, 200);
    const document = serverDocumentSchema.parse(res.body);
    assert.equal(document.server, "club.example");
    assert.equal(document.keys.length, 1);
    assert.equal(document.signature.keyId, keyIdOf(Buffer.from(document.identityKey, "base64")));
    assert.notEqual(document.signature.keyId, document.keys[0]!.id, "not signed by the rotating key");
    assert.deepEqual(
      Buffer.from(document.identityKey, "base64"),
      Buffer.from(club.home.services.federation.document.identity().publicKey),
    );
    const trustRoot = await club.http().get("/v1/certificate/trust-root");
    assert.equal(document.trustRoot, trustRoot.body.publicKey);
    assert.ok(verifyServerDocument(document));
    assert.ok(document.validUntil > Date.now() && document.validUntil <= document.keys[0]!.validUntil);
    // The same document (not signed again) on the next request.
    assert.deepEqual((await club.http().get(serverDocumentPath)).body, res.body);
  });

  it("fails verification when any field is changed, or the signing key is not its own", async () => {
    const document = serverDocumentSchema.parse((await club.http().get(serverDocumentPath)).body);
    const tampered: ServerDocument[] = [
      { ...document, server: "news.example" },
      { ...document, trustRoot: (await island.http().get("/v1/certificate/trust-root")).body.publicKey },
      { ...document, validUntil: document.validUntil + 1 },
      { ...document, keys: [{ ...document.keys[0]!, validUntil: document.keys[0]!.validUntil + 1 }] },
      { ...document, signature: { ...document.signature, keyId: "ed25519:0000000000000000" } },
      {
        ...document,
        identityKey: document.keys[0]!.publicKey,
        signature: { ...document.signature, keyId: document.keys[0]!.id },
      },
    ];
    for (const t of tampered) assert.equal(verifyServerDocument(t), false);
    // Rotating keys swapped for another server's, without the identity key's signature over them.
    const islandKeys = await federated();
    try {
      const other = serverDocumentSchema.parse((await islandKeys.http().get(serverDocumentPath)).body);
      assert.equal(verifyServerDocument({ ...document, keys: other.keys }), false);
      // Re-signed by a rotating key (as documents were before identity keys): refused too.
      const { signature: _, ...unsigned } = { ...document, keys: other.keys };
      const rotating = islandKeys.home.services.federation.document.keys()[0]!;
      const sig = sign(null, Buffer.from(canonicalize(unsigned)!), rotating.privateKey).toString("base64");
      assert.equal(verifyServerDocument({ ...unsigned, signature: { keyId: rotating.id, sig } }), false);
    } finally {
      await islandKeys.stop();
    }
    // A key listed after it expired no longer verifies.
    assert.equal(verifyServerDocument(document, document.keys[0]!.validUntil), false);
  });

  it("keeps its private keys (identity and request-signing) in files only its owner may read", () => {
    const dir = federationKeyDirectory(club.dataDir);
    const files = readdirSync(dir).sort();
    assert.equal(files.length, 2);
    assert.match(files[0]!, /^\d+\.key$/);
    assert.equal(files[1], "identity.key");
    for (const file of files) assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  it("keeps its identity key across a restart, and `zimchat federation-identity` prints its allowlist entry", async () => {
    const server = await federated();
    try {
      const before = serverDocumentSchema.parse((await server.http().get(serverDocumentPath)).body);
      await server.halt();
      // The CLI on the data directory of the stopped server: the same identity, not a new one.
      const { stdout } = await promisify(execFile)(process.execPath, [
        bin,
        "federation-identity",
        "--data-dir",
        server.dataDir,
        "--server-name",
        server.name,
      ]);
      assert.equal(stdout.trim(), `${server.name}=${fingerprintOf(before)}`);
      assert.match(stdout.trim(), /=sha256:[0-9a-f]{64}$/);
      const asJson = await promisify(execFile)(process.execPath, [
        bin,
        "federation-identity",
        "--json",
        "--data-dir",
        server.dataDir,
        "--server-name",
        server.name,
      ]);
      assert.deepEqual(JSON.parse(asJson.stdout), {
        server: server.name,
        fingerprint: fingerprintOf(before),
        entry: `${server.name}=${fingerprintOf(before)}`,
      });
      await server.restart();
      const after = serverDocumentSchema.parse((await server.http().get(serverDocumentPath)).body);
      assert.equal(after.identityKey, before.identityKey);
      assert.ok(verifyServerDocument(after));
    } finally {
      await server.stop();
    }
  });

  it("`zimchat federation-identity` creates the identity key in a new data directory (mode 0600), the key the server then uses", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "zimchat-identity-"));
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [
        bin,
        "federation-identity",
        "--data-dir",
        dataDir,
        "--server-name",
        "club.example",
      ]);
      const file = join(federationKeyDirectory(dataDir), "identity.key");
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(stdout.trim(), `club.example=${identityFingerprint(loadIdentityKey(dataDir).publicKey)}`);
      const help = await promisify(execFile)(process.execPath, [bin, "federation-identity", "--help"]);
      assert.match(help.stdout, /--data-dir/);
      assert.match(help.stdout, /--server-name/);
      assert.match(help.stdout, /allowlist entry/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
  it("a federation key file others may read stops `zimchat serve` at start-up, naming the file", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "zimchat-identity-"));
    try {
      await promisify(execFile)(process.execPath, [bin, "federation-identity", "--data-dir", dataDir]);
      const file = join(federationKeyDirectory(dataDir), "identity.key");
      chmodSync(file, 0o644);
      const refused = await promisify(execFile)(
        process.execPath,
        [
          bin,
          "serve",
          "--data-dir",
          dataDir,
          "--database-url",
          `file:${join(dataDir, "zimchat.db")}`,
          "--server-name",
          "club.example",
          "--federation",
          "open",
          "--port",
          "0",
          "--host",
          "127.0.0.1",
        ],
        { timeout: 30_000 },
      ).then(
        () => null,
        (error: unknown) => error as { code?: unknown; killed?: boolean; stderr: string },
      );
      assert.ok(refused, "serve started with a world-readable identity key");
      assert.equal(refused.killed, false, "serve did not exit by itself");
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /identity\.key/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("federation signing keys", () => {
  let dataDir: string;
  before(() => (dataDir = mkdtempSync(join(tmpdir(), "zimchat-fedkeys-"))));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it("rotate every period, publish the previous key during the overlap, then delete it; the identity key stays", () => {
    const start = 100 * rotationPeriodMs + 1000;
    const first = loadSigningKeys(dataDir, start);
    assert.equal(first.length, 1);
    assert.equal(first[0]!.validUntil, 101 * rotationPeriodMs + rotationOverlapMs);
    assert.deepEqual(
      loadSigningKeys(dataDir, start + 1000).map((k) => k.id),
      [first[0]!.id],
      "the same key within its period",
    );

    const next = start + rotationPeriodMs;
    const rotated = loadSigningKeys(dataDir, next);
    assert.equal(rotated.length, 2);
    assert.notEqual(rotated[0]!.id, first[0]!.id, "the new key comes first: it signs");
    assert.equal(rotated[1]!.id, first[0]!.id, "the old key is still published");

    const service = new ServerDocumentService(
      dataDir,
      "club.example",
      () => "BQ==",
      () => next,
    );
    const document = service.document();
    assert.deepEqual(
      document.keys.map((k) => k.id),
      rotated.map((k) => k.id),
    );
    const identity = loadIdentityKey(dataDir);
    assert.equal(document.signature.keyId, identity.id, "signed by the identity key, not the new rotating key");
    assert.ok(verifyServerDocument(document, next));
    // An earlier document (another "run" on the same data directory) has the same identity key.
    const earlier = new ServerDocumentService(
      dataDir,
      "club.example",
      () => "BQ==",
      () => start,
    ).document();
    assert.equal(earlier.identityKey, document.identityKey);

    const afterOverlap = 101 * rotationPeriodMs + rotationOverlapMs;
    assert.deepEqual(
      loadSigningKeys(dataDir, afterOverlap).map((k) => k.id),
      [rotated[0]!.id],
      "the old key's file is deleted once it expired",
    );
    assert.deepEqual(readdirSync(federationKeyDirectory(dataDir)).sort(), [
      `${Math.floor(next / rotationPeriodMs)}.key`,
      "identity.key",
    ]);
    const later = new ServerDocumentService(
      dataDir,
      "club.example",
      () => "BQ==",
      () => afterOverlap,
    ).document();
    assert.equal(later.identityKey, document.identityKey, "the identity key never rotates by itself");
    assert.ok(verifyServerDocument(later, afterOverlap));
  });

  it("refuses a key file others may read", () => {
    const dir = federationKeyDirectory(dataDir);
    const [file] = readdirSync(dir).filter((f) => f !== "identity.key");
    chmodSync(join(dir, file!), 0o644);
    assert.throws(() => loadSigningKeys(dataDir, 101 * rotationPeriodMs + rotationOverlapMs), KeyFileError);
    chmodSync(join(dir, file!), 0o600);
    chmodSync(join(dir, "identity.key"), 0o640);
    assert.throws(() => loadIdentityKey(dataDir), KeyFileError);
    chmodSync(join(dir, "identity.key"), 0o600);
  });
});
