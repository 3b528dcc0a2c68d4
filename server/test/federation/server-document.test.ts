import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serverDocumentPath, serverDocumentSchema, type ServerDocument } from "@zimchat/protocol";
import { KeyFileError } from "../../src/services/key-files.js";
import { ServerDocumentService, verifyServerDocument } from "../../src/federation/server-document.js";
import {
  federationKeyDirectory,
  loadSigningKeys,
  rotationOverlapMs,
  rotationPeriodMs,
} from "../../src/federation/signing-keys.js";
import { startServer, type TestServer } from "../support/harness.js";

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

  it("names the server, its signing key and its trust root, signed by that key", async () => {
    const res = await club.http().get(serverDocumentPath);
    assert.equal(res.status, 200);
    const document = serverDocumentSchema.parse(res.body);
    assert.equal(document.server, "club.example");
    assert.equal(document.keys.length, 1);
    assert.equal(document.signature.keyId, document.keys[0]!.id);
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
    ];
    for (const t of tampered) assert.equal(verifyServerDocument(t), false);
    // A key listed after it expired no longer verifies.
    assert.equal(verifyServerDocument(document, document.keys[0]!.validUntil), false);
  });

  it("keeps its private key in a file only its owner may read", () => {
    const dir = federationKeyDirectory(club.dataDir);
    const files = readdirSync(dir);
    assert.equal(files.length, 1);
    assert.equal(statSync(join(dir, files[0]!)).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });
});

describe("federation signing keys", () => {
  let dataDir: string;
  before(() => (dataDir = mkdtempSync(join(tmpdir(), "zimchat-fedkeys-"))));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it("rotate every period, publish the previous key during the overlap, then delete it", () => {
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
    assert.equal(document.signature.keyId, rotated[0]!.id);
    assert.ok(verifyServerDocument(document, next));

    const afterOverlap = 101 * rotationPeriodMs + rotationOverlapMs;
    assert.deepEqual(
      loadSigningKeys(dataDir, afterOverlap).map((k) => k.id),
      [rotated[0]!.id],
      "the old key's file is deleted once it expired",
    );
    assert.equal(readdirSync(federationKeyDirectory(dataDir)).length, 1);
  });

  it("refuses a key file others may read", () => {
    const dir = federationKeyDirectory(dataDir);
    const [file] = readdirSync(dir);
    chmodSync(join(dir, file!), 0o644);
    assert.throws(() => loadSigningKeys(dataDir, 101 * rotationPeriodMs + rotationOverlapMs), KeyFileError);
    chmodSync(join(dir, file!), 0o600);
  });
});
