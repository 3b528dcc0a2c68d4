/**
 * The mailbox path: per-recipient-device caps, the
 * shared part of a multi-recipient message stored once and assembled
 * byte-identically at delivery, and coarse server
 * timestamps (seized queues). Real app, real database, real libsignal.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import SealedSenderMultiRecipientMessage from "@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js";
import { limits, type Envelope } from "@zimchat/protocol";
import { encryptFor, roomyRateLimits, startServer, startSession, type TestServer } from "../support/harness.js";
import { certificateFor } from "../support/sealed.js";
import type { SignalDevice } from "@zimchat/testing/signal";

const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));

/** The real `zimchat seizure-report --json`: each check's id and status. */
function seizureChecks(server: TestServer): Promise<Map<string, string>> {
  const args = [bin, "seizure-report", "--data-dir", server.dataDir, "--database-url", server.databaseUrl, "--json"];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      args,
      { env: { ...process.env, DATABASE_URL: "", ZIMCHAT_DATA_DIR: "" }, maxBuffer: 16 << 20 },
      (_error, stdout, stderr) => {
        try {
          const report = JSON.parse(stdout) as { checks: { id: string; status: string; detail: string }[] };
          resolve(new Map(report.checks.map((c) => [c.id, `${c.status}: ${c.detail}`])));
        } catch {
          reject(new Error(`no JSON report: ${stderr}`));
        }
      },
    );
  });
}

async function queue(server: TestServer, device: SignalDevice): Promise<Envelope[]> {
  const res = await server.http().get("/v1/messages").set("Authorization", device.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.envelopes;
}

async function refusals(server: TestServer, reason: string): Promise<number> {
  const res = await server.http().get("/metrics");
  assert.equal(res.status, 200);
  const line = res.text.split("\n").find((l) => l.startsWith(`zimchat_refusals_total{reason="${reason}"}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function rows(server: TestServer, table: string): Promise<number> {
  const [row] = await server.home.database.prisma.$queryRawUnsafe<{ n: bigint | number }[]>(
    `SELECT count(*) AS n FROM "${table}"`,
  );
  return Number(row!.n);
}

describe("per-recipient mailbox caps", () => {
  let server: TestServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  let carol: SignalDevice;
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits, mailboxMaxEnvelopes: 3, mailboxMaxBytes: 64 * 1024 });
    [alice, bob, carol] = [await server.register(), await server.register(), await server.register()];
    await startSession(server, alice, bob);
    await startSession(server, alice, carol);
  });
  after(async () => server.stop());

  const send = async (to: SignalDevice, text = "hello") =>
    server
      .http()
      .put(`/v1/messages/${to.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({
        messages: await encryptFor(
          alice,
          { uuid: to.uuid, devices: [{ deviceId: 1, registrationId: to.registrationId }] },
          text,
        ),
      });

  it("fills bob's mailbox to the envelope cap, refuses the next send with 507 mailbox_full, frees room on ack, and leaves carol alone", async () => {
    const refusedBefore = await refusals(server, "mailbox_full");
    for (let i = 0; i < 3; i++) assert.equal((await send(bob)).status, 200);
    const full = await send(bob);
    assert.equal(full.status, 507, JSON.stringify(full.body));
    assert.equal(full.body.code, "mailbox_full");
    assert.ok(Number(full.headers["retry-after"]) > 0);
    assert.equal((await queue(server, bob)).length, 3, "the refused send stored nothing");
    assert.equal((await send(carol)).status, 200, "another recipient is unaffected");
    assert.equal(await refusals(server, "mailbox_full"), refusedBefore + 1);

    const [first] = await queue(server, bob);
    const acked = await server
      .http()
      .post("/v1/messages/ack")
      .set("Authorization", bob.authHeader)
      .send({ ids: [first!.id] });
    assert.deepEqual(acked.body, { deleted: 1 });
    assert.equal((await send(bob)).status, 200, "acking freed room");
    assert.equal((await send(bob)).status, 507);

    // Over the socket, the same refusal.
    const socket = await server.connect(alice);
    const messages = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "again",
    );
    const result = await socket.socket.timeout(10_000).emitWithAck("send", { destination: bob.uuid, messages });
    assert.equal(!result.ok && result.error.code, "mailbox_full");
    socket.close();

    // Drain bob: the usage goes back to zero and the cap is whole again.
    const ids = (await queue(server, bob)).map((e) => e.id);
    await server.http().post("/v1/messages/ack").set("Authorization", bob.authHeader).send({ ids });
    for (let i = 0; i < 3; i++) assert.equal((await send(bob)).status, 200);
  });

  it("counts bytes too: a mailbox under the envelope cap but at the byte cap refuses", async () => {
    const ids = (await queue(server, carol)).map((e) => e.id);
    await server.http().post("/v1/messages/ack").set("Authorization", carol.authHeader).send({ ids });
    assert.equal((await send(carol, "x".repeat(40 * 1024))).status, 200);
    const full = await send(carol, "y".repeat(40 * 1024));
    assert.equal(full.status, 507);
    assert.equal(full.body.code, "mailbox_full");
    assert.equal((await send(carol, "small")).status, 200, "a small one still fits");
  });
});

describe("multi-recipient messages: the shared part stored once", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits });
  });
  after(async () => server.stop());

  it("stores one shared row, delivers bytes identical to libsignal's messageForRecipient, deletes it with the last ack; coarse timestamps", async () => {
    const alice = await server.register();
    const members = [await server.register(), await server.register(), await server.register()];
    for (const m of members) await startSession(server, alice, m);
    const certificate = await certificateFor(server, alice);
    const message = await alice.sealedMultiEncrypt(
      members.map((m) => m.address),
      randomUUID(),
      "z".repeat(20_000),
      certificate,
    );
    const res = await server
      .http()
      .put("/v1/messages/multi-recipient")
      .set("Authorization", alice.authHeader)
      .send({ message: b64(message) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.serverTimestamp % limits.serverTimestampGranularityMs, 0, "the answer's timestamp is coarse");

    assert.equal(await rows(server, "SharedPayload"), 1, "the shared part is stored once");
    const [stored] = await server.home.database.prisma.$queryRawUnsafe<{ biggest: bigint | number }[]>(
      `SELECT max(length("content")) AS biggest FROM "Envelope"`,
    );
    assert.ok(
      Number(stored!.biggest) < 200,
      `each envelope holds only its recipient's header (${stored!.biggest} bytes)`,
    );

    const parsed = new SealedSenderMultiRecipientMessage(message);
    const byUuid = parsed.recipientsByServiceIdString();
    for (const m of members) {
      const [envelope] = await queue(server, m);
      assert.ok(envelope);
      assert.equal(
        envelope.serverTimestamp % limits.serverTimestampGranularityMs,
        0,
        "the envelope's timestamp is coarse",
      );
      assert.deepEqual(
        Buffer.from(envelope.content, "base64"),
        Buffer.from(parsed.messageForRecipient(byUuid[m.uuid]!)),
        "identical to libsignal's messageForRecipient",
      );
    }
    const checks = await seizureChecks(server);
    assert.match(
      checks.get("envelope-ciphertext") ?? "absent",
      /^pass/,
      "the seizure report reads multi-recipient envelopes whole",
    );
    for (const [i, m] of members.entries()) {
      const ids = (await queue(server, m)).map((e) => e.id);
      await server.http().post("/v1/messages/ack").set("Authorization", m.authHeader).send({ ids });
      assert.equal(await rows(server, "SharedPayload"), i < members.length - 1 ? 1 : 0, `after ${i + 1} acks`);
    }
    const [usage] = await server.home.database.prisma.$queryRawUnsafe<{ e: bigint | number; b: bigint | number }[]>(
      `SELECT coalesce(sum("envelopes"), 0) AS e, coalesce(sum("bytes"), 0) AS b FROM "MailboxUsage"`,
    );
    assert.deepEqual([Number(usage!.e), Number(usage!.b)], [0, 0], "mailbox usage back to zero");
  });

  it("pushes the assembled message to online devices", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const socket = await server.connect(bob);
    await socket.queueEmpty;
    const message = await alice.sealedMultiEncrypt(
      [bob.address],
      randomUUID(),
      "pushed",
      await certificateFor(server, alice),
    );
    const res = await server
      .http()
      .put("/v1/messages/multi-recipient")
      .set("Authorization", alice.authHeader)
      .send({ message: b64(message) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const [pushed] = await socket.waitFor(1);
    const parsed = new SealedSenderMultiRecipientMessage(message);
    assert.deepEqual(
      Buffer.from(pushed!.content, "base64"),
      Buffer.from(parsed.messageForRecipient(parsed.recipientsByServiceIdString()[bob.uuid]!)),
    );
    assert.equal(pushed!.serverTimestamp % limits.serverTimestampGranularityMs, 0);
    socket.close();
  });
});
