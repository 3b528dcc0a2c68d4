import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SenderCertificate } from "@signalapp/libsignal-client";
import { encryptAttachmentBytes } from "@zimchat/client";
import { accessKeyHeader } from "@zimchat/protocol";
import type { SeizureReport } from "../../src/seizure/report.js";
import { AccountStore } from "../../src/stores/account-store.js";
import { dayNumber } from "../../src/util/day.js";
import { encryptFor, startServer, startSession, testProvider, type TestServer } from "../support/harness.js";
import type { SignalDevice } from "@zimchat/testing/signal";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));
const modelsFile = fileURLToPath(new URL("../../../../prisma/models.prisma", import.meta.url));

/** Runs the real `zimchat seizure-report` as a child process. */
function runReport(server: TestServer, json = true): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = [
    bin,
    "seizure-report",
    "--data-dir",
    server.dataDir,
    "--database-url",
    server.databaseUrl,
    ...(json ? ["--json"] : []),
  ];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { env: { ...process.env, DATABASE_URL: "", ZIMCHAT_DATA_DIR: "" }, maxBuffer: 16 << 20 },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function report(server: TestServer): Promise<{ code: number; report: SeizureReport; stdout: string }> {
  const run = await runReport(server);
  assert.ok(run.stdout.trim().startsWith("{"), `no JSON report (exit ${run.code}): ${run.stderr}`);
  return { code: run.code, report: JSON.parse(run.stdout) as SeizureReport, stdout: run.stdout };
}

const checkStatus = (r: SeizureReport, id: string): string => r.checks.find((c) => c.id === id)?.status ?? "absent";

/** The scalar columns of every model in prisma/models.prisma (relations are not columns). */
function modelColumns(): Map<string, string[]> {
  const models = new Map<string, string[]>();
  for (const match of readFileSync(modelsFile, "utf8").matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)) {
    const columns = [...match[2]!.matchAll(/^\s+(\w+)\s+(String|Int|BigInt|Bytes|DateTime|Boolean)\??\s/gm)].map(
      (m) => m[1]!,
    );
    models.set(match[1]!, columns);
  }
  return models;
}

describe("zimchat seizure-report: what a seized server knows, checked against the data", () => {
  let server: TestServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  const secrets: string[] = [];
  let sealedContent = "";
  let attachmentId = "";

  before(async () => {
    server = await startServer();
    alice = await server.register();
    bob = await server.register();
    for (const d of [alice, bob]) {
      const res = await server.http().put("/v1/keys").set("Authorization", d.authHeader).send(d.keyUpload(3, 2));
      assert.equal(res.status, 204);
    }
    await startSession(server, alice, bob);
    // Two envelopes with a sender, queued for Bob (offline).
    for (const text of ["seizure-marker-one", "seizure-marker-two"]) {
      const messages = await encryptFor(
        alice,
        { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
        text,
      );
      secrets.push(messages[0]!.content);
      const res = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    // One sealed envelope through the real sealed-sender path: Bob publishes an access key, Alice sends without
    // credentials.
    const accessKey = randomBytes(16).toString("base64");
    const attributes = await server
      .http()
      .put("/v1/accounts/attributes")
      .set("Authorization", bob.authHeader)
      .send({ accessKey, unrestrictedAccess: false });
    assert.equal(attributes.status, 204, JSON.stringify(attributes.body));
    const cert = await server.http().get("/v1/certificate/delivery").set("Authorization", alice.authHeader);
    assert.equal(cert.status, 200, JSON.stringify(cert.body));
    const certificate = SenderCertificate.deserialize(Buffer.from(cert.body.certificate as string, "base64"));
    const sealed = await alice.sealedEncrypt(bob.uuid, 1, "seizure-marker-sealed", certificate);
    sealedContent = sealed.content;
    const send = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set(accessKeyHeader, accessKey)
      .send({ messages: [{ ...sealed, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] });
    assert.equal(send.status, 200, JSON.stringify(send.body));
    secrets.push(sealed.content, accessKey, alice.password, bob.password, cert.body.certificate as string);
    // One attachment, encrypted and padded by the client module: low-entropy text in, ciphertext stored.
    const attachment = await encryptAttachmentBytes(Buffer.from("Minutes of the meeting. ".repeat(400)));
    const upload = await server
      .http()
      .post("/v1/attachments")
      .set("Authorization", alice.authHeader)
      .set("content-type", "application/octet-stream")
      .send(attachment.blob);
    assert.equal(upload.status, 201, JSON.stringify(upload.body));
    attachmentId = upload.body.id as string;
  });
  after(async () => server?.stop());

  it("describes every table and column, counts the rows, and every check passes", async () => {
    const { code, report: r, stdout } = await report(server);
    assert.equal(code, 0, stdout);
    assert.equal(r.ok, true);
    assert.equal(r.database.provider, testProvider);

    // Every model and scalar field of the data model, and the bookkeeping tables, with a description.
    const tables = new Map(r.tables.map((t) => [t.name, t]));
    for (const [model, columns] of modelColumns()) {
      const table = tables.get(model);
      assert.ok(table, `table ${model} missing from the report`);
      assert.deepEqual(table.columns.map((c) => c.name).sort(), [...columns].sort(), `columns of ${model}`);
      for (const c of table.columns) assert.ok(c.reveals.length > 5, `${model}.${c.name} has no description`);
    }
    assert.ok(tables.has("_prisma_migrations"));
    const expectedTables = modelColumns().size + 1 + (testProvider === "sqlite" ? 1 : 0);
    assert.equal(r.tables.length, expectedTables, r.tables.map((t) => t.name).join(", "));
    if (testProvider === "postgresql")
      assert.deepEqual(
        r.sequences.map((s) => s.name),
        ["Envelope_seq_seq", "FederationOutbox_seq_seq"],
      );

    // Row counts agree with the database.
    const prisma = server.home.database.prisma;
    const counts: Record<string, number> = {
      Account: await prisma.account.count(),
      Device: await prisma.device.count(),
      Envelope: await prisma.envelope.count(),
      EcPreKey: await prisma.ecPreKey.count(),
      KyberPreKey: await prisma.kyberPreKey.count(),
      SignedPreKey: await prisma.signedPreKey.count(),
      KyberLastResortKey: await prisma.kyberLastResortKey.count(),
    };
    assert.deepEqual(counts, {
      Account: 2,
      Device: 2,
      Envelope: 3,
      EcPreKey: 5,
      KyberPreKey: 3,
      SignedPreKey: 2,
      KyberLastResortKey: 2,
    });
    for (const [name, n] of Object.entries(counts)) assert.equal(tables.get(name)!.rows, n, `${name} rows`);
    assert.deepEqual(r.envelopes, { total: 3, sealed: 1, notSealed: 2, everQueued: 3 });
    assert.equal(tables.get("Attachment")!.rows, 1);
    assert.deepEqual(
      r.files.filter((f) => f.kind === "blob").map((f) => f.path),
      [join("attachments", attachmentId)],
    );
    assert.match(
      r.checks.find((c) => c.id === "opaque-blobs")!.detail,
      /^1 blob files in the data directory \(1 attachment rows\)/,
    );

    // Every check ran and passed, the server's own private keys are listed for what they are.
    assert.deepEqual(
      r.checks.map((c) => [c.id, c.status]),
      [
        "envelope-ciphertext",
        "outbox-ciphertext",
        "public-keys-only",
        "sealed-no-sender",
        "no-ip-addresses",
        "last-seen-day",
        "creation-day",
        "opaque-blobs",
      ].map((id) => [id, "pass"]),
    );
    assert.match(r.checks[0]!.detail, /all 3 envelope contents parse/);
    assert.match(r.checks[3]!.detail, /^0 of 1 sealed envelopes have a sender stored; 2 of 3/);
    const keys = r.files.filter((f) => f.kind === "private-key").map((f) => f.path.split(/[\\/]/).pop());
    assert.deepEqual(keys.sort(), ["server.key", "trust-root.key"]);
    assert.ok(r.files.filter((f) => f.kind === "private-key").every((f) => /decrypts no message/.test(f.reveals)));

    // No secret in the output: no ciphertext, access key, password or certificate.
    for (const secret of secrets) assert.ok(!stdout.includes(secret), "a secret appears in the report");
    for (const d of [alice, bob])
      assert.ok(!stdout.includes(Buffer.from(d.identity.getPublicKey().serialize()).toString("base64")));
  });

  it("prints the same as text, with every table", async () => {
    const run = await runReport(server, false);
    assert.equal(run.code, 0, run.stderr);
    for (const model of modelColumns().keys()) assert.match(run.stdout, new RegExp(`^  ${model} \\(\\d+ rows\\)`, "m"));
    assert.match(run.stdout, /\[PASS\] no sender on sealed envelopes/);
    assert.match(run.stdout, /every check passed$/m);
  });

  it("flags a private-key-sized value in a key column", async () => {
    const prisma = server.home.database.prisma;
    await prisma.ecPreKey.create({
      data: { accountId: alice.uuid, deviceId: 1, keyId: 999_001, publicKey: new Uint8Array(randomBytes(32)) },
    });
    try {
      const { code, report: r } = await report(server);
      assert.equal(code, 2);
      assert.equal(r.ok, false);
      assert.equal(checkStatus(r, "public-keys-only"), "fail");
      assert.match(
        r.checks.find((c) => c.id === "public-keys-only")!.detail,
        /EcPreKey\.publicKey: 1 value\(s\) of 32 bytes/,
      );
    } finally {
      await prisma.ecPreKey.deleteMany({ where: { keyId: 999_001 } });
    }
  });

  it("flags a sealed envelope stored with a sender", async () => {
    const prisma = server.home.database.prisma;
    const id = randomUUID();
    await prisma.envelope.create({
      data: {
        id,
        accountId: bob.uuid,
        deviceId: 1,
        type: 6,
        sourceAccountId: alice.uuid,
        sourceDeviceId: 1,
        content: new Uint8Array(Buffer.from(sealedContent, "base64")),
        serverTimestamp: BigInt(Date.now()),
        expiresAt: BigInt(Date.now() + 86_400_000),
      },
    });
    try {
      const { code, report: r } = await report(server);
      assert.equal(code, 2);
      assert.equal(checkStatus(r, "sealed-no-sender"), "fail");
      assert.match(
        r.checks.find((c) => c.id === "sealed-no-sender")!.detail,
        /^1 of 2 sealed envelopes have a sender stored/,
      );
      assert.equal(checkStatus(r, "envelope-ciphertext"), "pass");
    } finally {
      await prisma.envelope.delete({ where: { id } });
    }
  });

  it("flags plaintext envelopes, including plaintext that passes the sealed frame check", async () => {
    const prisma = server.home.database.prisma;
    const row = (type: number, text: string) => ({
      id: randomUUID(),
      accountId: bob.uuid,
      deviceId: 1,
      type,
      content: new Uint8Array(Buffer.from(text)),
      serverTimestamp: BigInt(Date.now()),
      expiresAt: BigInt(Date.now() + 86_400_000),
    });
    // "!" is 0x21: a sealed-sender v2 version byte, so only the ciphertext test can tell.
    const rows = [
      row(2, "meet me at the usual place at nine"),
      row(6, "!meet me at the usual place at nine tomorrow evening, and bring the documents and the spare keys please"),
    ];
    await prisma.envelope.createMany({ data: rows });
    try {
      const { code, report: r, stdout } = await report(server);
      assert.equal(code, 2);
      const check = r.checks.find((c) => c.id === "envelope-ciphertext")!;
      assert.equal(check.status, "fail");
      assert.match(check.detail, /^2 of 5 envelope contents/);
      assert.match(check.detail, /not a libsignal whisper message/);
      assert.match(check.detail, /text characters in a row/);
      assert.ok(!stdout.includes("usual place"), "the report printed the plaintext");
    } finally {
      await prisma.envelope.deleteMany({ where: { id: { in: rows.map((r) => r.id) } } });
    }
  });

  it("flags a plaintext file in the data directory and an IP address in a log file there", async () => {
    const dir = join(server.dataDir, "planted");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "not-encrypted"), "Dear Bob, the minutes of Tuesday's meeting follow. ".repeat(20));
    writeFileSync(join(dir, "encrypted"), randomBytes(4096));
    writeFileSync(
      join(server.dataDir, "access.log"),
      `{"msg":"request","remote":"192.0.2.17"}\n{"msg":"request","remote":"2001:db8::5"}\n{"msg":"ok"}\n`,
    );
    try {
      const { code, report: r } = await report(server);
      assert.equal(code, 2);
      const blobs = r.checks.find((c) => c.id === "opaque-blobs")!;
      assert.equal(blobs.status, "fail");
      assert.match(blobs.detail, /not-encrypted: \d+ text characters in a row/);
      assert.doesNotMatch(blobs.detail, /planted[\\/]encrypted|attachments/);
      const ips = r.checks.find((c) => c.id === "no-ip-addresses")!;
      assert.equal(ips.status, "fail");
      assert.match(ips.detail, /access\.log: 2 line\(s\) contain an IP address/);
      assert.ok(!ips.detail.includes("192.0.2.17"), "the report printed the address");
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(join(server.dataDir, "access.log"), { force: true });
    }
  });

  it("refuses to report on a column it does not describe", async () => {
    const prisma = server.home.database.prisma;
    await prisma.$executeRawUnsafe(`ALTER TABLE "Device" ADD COLUMN "lastIp" TEXT`);
    try {
      const run = await runReport(server);
      assert.equal(run.code, 1);
      assert.match(run.stderr, /the database has column Device\.lastIp, which the seizure report does not describe/);
      assert.equal(JSON.parse(run.stdout).error, "schema_drift");
    } finally {
      await prisma.$executeRawUnsafe(`ALTER TABLE "Device" DROP COLUMN "lastIp"`);
    }
    assert.equal((await runReport(server)).code, 0);
  });
});

describe("last-seen day: kept to the day, written at most once a day", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server?.stop());

  it("sets Device.lastSeenDay to today on authentication, and does not write it again that day", async () => {
    const prisma = server.home.database.prisma;
    const carol = await server.register();
    const where = { accountId_id: { accountId: carol.uuid, id: 1 } };
    const lastSeen = async (): Promise<number> =>
      (await prisma.device.findUniqueOrThrow({ where, select: { lastSeenDay: true } })).lastSeenDay;
    assert.equal(await lastSeen(), 0, "registration is not a connection");

    // A failed authentication records nothing.
    const wrong = `Basic ${Buffer.from(`${carol.uuid}.1:not-the-password`).toString("base64")}`;
    assert.equal((await server.http().get("/v1/accounts/whoami").set("Authorization", wrong)).status, 401);
    assert.equal(await lastSeen(), 0);

    assert.equal((await server.http().get("/v1/accounts/whoami").set("Authorization", carol.authHeader)).status, 200);
    const today = dayNumber();
    assert.equal(await lastSeen(), today);

    // Overwrite it behind the server's back: further requests today (HTTP and socket) must not write.
    await prisma.device.update({ where, data: { lastSeenDay: today - 3 } });
    for (let i = 0; i < 3; i++)
      assert.equal((await server.http().get("/v1/accounts/whoami").set("Authorization", carol.authHeader)).status, 200);
    const socket = await server.connect(carol);
    socket.close();
    assert.equal(await lastSeen(), today - 3);

    // The account and device creation times are kept to the day.
    const account = await prisma.account.findUniqueOrThrow({ where: { id: carol.uuid }, select: { createdAt: true } });
    const device = await prisma.device.findUniqueOrThrow({ where, select: { createdAt: true } });
    assert.equal(account.createdAt.getTime() % 86_400_000, 0);
    assert.equal(device.createdAt.getTime(), account.createdAt.getTime());
    assert.equal(dayNumber(account.createdAt.getTime()), today);
  });

  it("writes once on the next day, then not again that day, and never moves the day back", async () => {
    const prisma = server.home.database.prisma;
    const dave = await server.register();
    const where = { accountId_id: { accountId: dave.uuid, id: 1 } };
    const lastSeen = async (): Promise<number> =>
      (await prisma.device.findUniqueOrThrow({ where, select: { lastSeenDay: true } })).lastSeenDay;
    const store = new AccountStore(prisma);
    const tomorrow = dayNumber() + 1;
    await store.markSeen(dave.uuid, 1, tomorrow);
    assert.equal(await lastSeen(), tomorrow);
    await prisma.device.update({ where, data: { lastSeenDay: 5 } });
    await store.markSeen(dave.uuid, 1, tomorrow);
    assert.equal(await lastSeen(), 5, "a second mark on the same day wrote");
    // Another process (a fresh store) writes, but only forward in time.
    await prisma.device.update({ where, data: { lastSeenDay: tomorrow + 1 } });
    await new AccountStore(prisma).markSeen(dave.uuid, 1, tomorrow);
    assert.equal(await lastSeen(), tomorrow + 1);
  });
});
