/**
 * Encrypted attachments end to end: the client module encrypts, pads and
 * uploads; the real homeserver streams the ciphertext to disk under its caps;
 * another account downloads and the client module checks and decrypts.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import {
  ApiError,
  AttachmentError,
  AttachmentFailureReason,
  blobSize,
  decryptAttachmentBytes,
  downloadAttachment,
  encryptAttachmentBytes,
  paddedSize,
  uploadAttachment,
  type AttachmentPointer,
  type DeviceCredentials,
} from "@zimchat/client";
import { startServer, type TestServer } from "../support/harness.js";
import type { SignalDevice } from "@zimchat/testing/signal";

const MiB = 1024 * 1024;
const marker = Buffer.from("ZIMCHAT-ATTACHMENT-MARKER-Bond-notes-in-Harare");

const credentials = (device: SignalDevice): DeviceCredentials => ({
  uuid: device.uuid,
  deviceId: device.deviceId,
  password: device.password,
});
const attachmentDir = (server: TestServer): string => join(server.dataDir, "attachments");
const filesIn = (server: TestServer): string[] =>
  existsSync(attachmentDir(server)) ? readdirSync(attachmentDir(server)).sort() : [];
const rowsOf = (server: TestServer, device: SignalDevice): Promise<number> =>
  server.home.database.prisma.attachment.count({ where: { accountId: device.uuid } });

/** `size` random bytes with the marker written every 1 MiB (and at the start). */
function plaintextWithMarkers(size: number): Buffer {
  const bytes = randomBytes(size);
  for (let at = 0; at + marker.length <= size; at += MiB) marker.copy(bytes, at);
  return bytes;
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface RawAnswer {
  status: number;
  headers: IncomingMessage["headers"];
  body: Buffer;
  json: { code?: string; [key: string]: unknown } | null;
}

function readAnswer(res: IncomingMessage): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (chunk: Buffer) => chunks.push(chunk));
    res.on("error", reject);
    res.on("end", () => {
      const body = Buffer.concat(chunks);
      let json = null;
      try {
        json = JSON.parse(body.toString("utf8"));
      } catch {
        // Not JSON: a blob.
      }
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
    });
  });
}

/**
 * A raw upload on a fresh connection: `chunks` are written one by one (each
 * after the previous drained, `pauseMs` apart), with a Content-Length header
 * (`declared`) or chunked. Resolves with the answer, which may come before
 * every chunk was written (a refusal); write errors after an answer are
 * ignored.
 */
function rawUpload(
  server: TestServer,
  options: {
    auth?: string;
    declared?: number;
    chunks: Iterable<Buffer>;
    pauseMs?: number;
    headers?: Record<string, string>;
    holdBody?: boolean;
  },
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { "content-type": "application/octet-stream", ...options.headers };
    if (options.auth) headers.authorization = options.auth;
    if (options.declared !== undefined) headers["content-length"] = String(options.declared);
    let answered = false;
    const req = httpRequest(
      new URL("/v1/attachments", server.url),
      { method: "POST", agent: false, headers },
      (res) => {
        answered = true;
        readAnswer(res).then(resolve, reject);
      },
    );
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    // Headers only, the body held back: an answer must not wait for it.
    if (options.holdBody) return void req.flushHeaders();
    void (async () => {
      for (const chunk of options.chunks) {
        if (answered || req.destroyed) return;
        if (!req.write(chunk)) await drained(req);
        if (options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
      }
      if (!answered && !req.destroyed) req.end();
    })();
  });
}

/** Resolves when `req` drains or closes (listeners removed either way). */
function drained(req: ReturnType<typeof httpRequest>): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      req.off("drain", done).off("close", done);
      resolve();
    };
    req.on("drain", done).on("close", done);
  });
}

function* repeat(chunk: Buffer, count: number): Generator<Buffer> {
  for (let i = 0; i < count; i++) yield chunk;
}

function download(
  server: TestServer,
  id: string,
  auth: string | undefined,
  headers: Record<string, string> = {},
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      new URL(`/v1/attachments/${id}`, server.url),
      { agent: false, headers: { ...headers, ...(auth && { authorization: auth }) } },
      (res) => readAnswer(res).then(resolve, reject),
    );
    req.on("error", reject);
    req.end();
  });
}

function assertCode(answer: RawAnswer, status: number, code: string, what: string): void {
  assert.equal(answer.status, status, `${what}: ${answer.body.toString("utf8").slice(0, 200)}`);
  assert.equal(answer.json?.code, code, what);
}

describe("encrypted attachments", () => {
  let server: TestServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  let work: string;
  const logs: string[] = [];
  before(async () => {
    server = await startServer({ logLevel: "trace" }, logs);
    alice = await server.register();
    bob = await server.register();
    work = mkdtempSync(join(tmpdir(), "zimchat-attachments-"));
  });
  after(async () => {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  });

  let big: { pointer: AttachmentPointer; plaintext: Buffer; path: string };

  it("round-trips a 20 MiB file byte-identical: encrypted, padded and streamed by the client, stored as ciphertext only", async () => {
    const plaintext = plaintextWithMarkers(20 * MiB + 12_345);
    const path = join(work, "big.bin");
    writeFileSync(path, plaintext);
    const pointer = await uploadAttachment(server.url, credentials(alice), path, {
      contentType: "application/pdf",
      fileName: "notes.pdf",
    });
    big = { pointer, plaintext, path };
    assert.equal(pointer.size, plaintext.length);
    assert.equal(pointer.contentType, "application/pdf");
    assert.equal(pointer.fileName, "notes.pdf");
    assert.match(pointer.id, /^[A-Za-z0-9_-]{22}$/);

    // What the server holds: one file named by the id, the padded ciphertext, nothing else.
    assert.deepEqual(filesIn(server), [pointer.id]);
    const stored = readFileSync(join(attachmentDir(server), pointer.id));
    assert.equal(stored.length, blobSize(plaintext.length));
    assert.ok(stored.length - 28 > plaintext.length, "padded beyond the true size");
    assert.equal(stored.indexOf(marker), -1, "no plaintext marker in the stored file");
    assert.ok(!stored.subarray(28, 4096).equals(plaintext.subarray(0, 4068)), "not the plaintext");
    const row = await server.home.database.prisma.attachment.findUniqueOrThrow({ where: { id: pointer.id } });
    assert.equal(row.accountId, alice.uuid);
    assert.equal(Number(row.size), stored.length);
    assert.ok(Number(row.expiresAt) - Number(row.createdAt) === server.config.attachmentTtlMs);

    // Bob (another account: the id is the capability) downloads to a file and into memory.
    const destination = join(work, "big.out");
    await downloadAttachment(server.url, credentials(bob), pointer, destination);
    assert.ok(readFileSync(destination).equals(plaintext), "file download is byte-identical");
    assert.deepEqual(readdirSync(work).sort(), ["big.bin", "big.out"], "no temporary files left");
    const inMemory = await downloadAttachment(server.url, credentials(bob), pointer);
    assert.ok(inMemory.equals(plaintext), "in-memory download is byte-identical");
  });

  it("pads to size buckets, so the server does not learn exact sizes", async () => {
    assert.equal(paddedSize(0), 541);
    assert.equal(paddedSize(1), 541);
    assert.equal(paddedSize(541), 541);
    for (const size of [542, 1000, 4097, 65_537, 1_000_000, 20 * MiB + 12_345]) {
      const padded = paddedSize(size);
      assert.ok(padded >= size && padded <= Math.ceil(size * 1.05) + 1, `bucket of ${size} is ${padded}`);
    }
    // Sizes in one bucket give blobs of one size.
    const sizes = [1000, 1001, 1010];
    assert.equal(new Set(sizes.map(paddedSize)).size, 1);
    const pointers = await Promise.all(
      sizes.map((n) => uploadAttachment(server.url, credentials(alice), plaintextWithMarkers(n))),
    );
    const stored = pointers.map((p) => statSync(join(attachmentDir(server), p.id)).size);
    assert.deepEqual(new Set(stored), new Set([blobSize(1000)]));
    for (const [i, p] of pointers.entries())
      assert.equal((await downloadAttachment(server.url, credentials(bob), p)).length, sizes[i]);
  });

  it("answers Range requests with 206 and the right bytes, and a range past the end with 416", async () => {
    const stored = readFileSync(join(attachmentDir(server), big.pointer.id));
    const whole = await download(server, big.pointer.id, bob.authHeader);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers["content-type"], "application/octet-stream");
    assert.equal(whole.headers["accept-ranges"], "bytes");
    assert.ok(whole.body.equals(stored));

    const middle = await download(server, big.pointer.id, bob.authHeader, { range: "bytes=1000000-1000999" });
    assert.equal(middle.status, 206);
    assert.equal(middle.headers["content-range"], `bytes 1000000-1000999/${stored.length}`);
    assert.ok(middle.body.equals(stored.subarray(1_000_000, 1_001_000)));
    const tail = await download(server, big.pointer.id, bob.authHeader, { range: "bytes=-16" });
    assert.equal(tail.status, 206);
    assert.ok(tail.body.equals(stored.subarray(stored.length - 16)), "the last 16 bytes (the GCM tag)");
    const open = await download(server, big.pointer.id, bob.authHeader, { range: `bytes=${stored.length - 5}-` });
    assert.equal(open.status, 206);
    assert.ok(open.body.equals(stored.subarray(stored.length - 5)));

    const past = await download(server, big.pointer.id, bob.authHeader, { range: `bytes=${stored.length}-` });
    assertCode(past, 416, "range_not_satisfiable", "range past the end");
    assert.equal(past.headers["content-range"], `bytes */${stored.length}`);
  });

  it("detects a flipped ciphertext byte (digest first, GCM tag too) and releases no plaintext", async () => {
    const plaintext = plaintextWithMarkers(300_000);
    const pointer = await uploadAttachment(server.url, credentials(alice), plaintext);
    const file = join(attachmentDir(server), pointer.id);
    const stored = readFileSync(file);
    const tampered = Buffer.from(stored);
    tampered[150_000] ^= 0x01;
    writeFileSync(file, tampered);

    const destination = join(work, "tampered.out");
    for (const target of [undefined, destination]) {
      await assert.rejects(
        target === undefined
          ? downloadAttachment(server.url, credentials(bob), pointer)
          : downloadAttachment(server.url, credentials(bob), pointer, target),
        (error: unknown) => error instanceof AttachmentError && error.reason === AttachmentFailureReason.DigestMismatch,
        `digest mismatch (${target ?? "in memory"})`,
      );
    }
    assert.ok(!existsSync(destination), "nothing written to the destination");
    assert.deepEqual(
      readdirSync(work).filter((f) => f.startsWith("tampered")),
      [],
      "no temporary files left",
    );

    // An attacker who also swapped the digest still fails the GCM tag.
    const { createHash } = await import("node:crypto");
    const forged = { ...pointer, digest: createHash("sha256").update(tampered).digest("base64") };
    assert.throws(
      () => decryptAttachmentBytes(tampered, forged),
      (error: unknown) => error instanceof AttachmentError && error.reason === AttachmentFailureReason.DecryptionFailed,
    );
    await assert.rejects(
      downloadAttachment(server.url, credentials(bob), forged, destination),
      (error: unknown) => error instanceof AttachmentError && error.reason === AttachmentFailureReason.DecryptionFailed,
    );
    assert.ok(!existsSync(destination), "nothing written to the destination");
    assert.deepEqual(
      readdirSync(work).filter((f) => f.startsWith("tampered")),
      [],
      "no temporary files left",
    );
    // A wrong key, a wrong size: refused too. The untampered blob still opens.
    const wrongKey = { ...pointer, key: randomBytes(32).toString("base64") };
    assert.throws(
      () => decryptAttachmentBytes(stored, wrongKey),
      (e: unknown) => e instanceof AttachmentError && e.reason === AttachmentFailureReason.DecryptionFailed,
    );
    assert.throws(
      () => decryptAttachmentBytes(stored, { ...pointer, size: 400_000 }),
      (e: unknown) => e instanceof AttachmentError && e.reason === AttachmentFailureReason.SizeMismatch,
    );
    assert.ok(decryptAttachmentBytes(stored, pointer).equals(plaintext));
  });

  it("streams an upload to disk: the server's memory does not grow by the file size", async (t) => {
    // Retained memory (heap + array buffers after a full GC), sampled while a
    // 24 MiB upload trickles in. Buffering the body would retain >= 24 MiB;
    // streaming holds a few socket and file-stream buffers. Bound: 8 MiB.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const retained = (): number => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const size = 24 * MiB;
    const chunk = randomBytes(256 * 1024); // the same buffer every time: the test itself allocates nothing per chunk
    const baseline = retained();
    const baselineRss = process.memoryUsage().rss;
    let peak = 0;
    let peakRss = 0;
    let samples = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, retained() - baseline);
      peakRss = Math.max(peakRss, process.memoryUsage().rss - baselineRss);
      samples++;
    }, 200);
    const answer = await rawUpload(server, {
      auth: alice.authHeader,
      declared: size,
      chunks: repeat(chunk, size / chunk.length),
      pauseMs: 30,
    });
    clearInterval(sampler);
    t.diagnostic(
      `${samples} samples; peak growth: retained ${(peak / MiB).toFixed(2)} MiB, RSS ${(peakRss / MiB).toFixed(2)} MiB; upload ${size / MiB} MiB`,
    );
    assert.equal(answer.status, 201, answer.body.toString());
    assert.equal(answer.json?.size, size);
    assert.equal(statSync(join(attachmentDir(server), answer.json!.id as string)).size, size);
    assert.ok(samples >= 5, `sampled ${samples} times during the upload`);
    assert.ok(
      peak < 8 * MiB,
      `retained memory grew by ${(peak / MiB).toFixed(1)} MiB during a ${size / MiB} MiB upload`,
    );
    assert.ok(peakRss < size / 2, `RSS grew by ${(peakRss / MiB).toFixed(1)} MiB during a ${size / MiB} MiB upload`);
  });

  it("leaves no file and no row when an upload is cut off halfway", async () => {
    const before = filesIn(server);
    const rows = await rowsOf(server, alice);
    for (const chunked of [false, true]) {
      const size = 8 * MiB;
      const req = httpRequest(new URL("/v1/attachments", server.url), {
        method: "POST",
        agent: false,
        headers: {
          authorization: alice.authHeader,
          "content-type": "application/octet-stream",
          ...(chunked ? {} : { "content-length": String(size) }),
        },
      });
      req.on("error", () => undefined);
      const chunk = randomBytes(64 * 1024);
      for (let sent = 0; sent < size / 2; sent += chunk.length) {
        if (!req.write(chunk)) await new Promise((r) => req.once("drain", r));
      }
      // The partial upload is on disk, then the client goes away.
      await until(
        () => filesIn(server).some((f) => f.endsWith(".part") && statSync(join(attachmentDir(server), f)).size > 0),
        "the partial upload",
      );
      req.destroy();
      await until(
        () => filesIn(server).length === before.length,
        `the partial file to go (${chunked ? "chunked" : "Content-Length"})`,
      );
      assert.deepEqual(filesIn(server), before);
      assert.equal(await rowsOf(server, alice), rows);
    }
  });

  it("refuses unauthenticated uploads and downloads with 401, storing nothing", async () => {
    const before = filesIn(server);
    const wrong = `Basic ${Buffer.from(`${alice.uuid}.1:${"A".repeat(24)}`).toString("base64")}`;
    for (const [name, auth] of [
      ["no credentials", undefined],
      ["wrong password", wrong],
      ["malformed", "Basic !!!"],
    ] as const) {
      const up = await rawUpload(server, { ...(auth && { auth }), declared: 4096, chunks: [randomBytes(4096)] });
      assertCode(up, 401, "unauthorized", `upload, ${name}`);
      const down = await download(server, big.pointer.id, auth);
      assertCode(down, 401, "unauthorized", `download, ${name}`);
    }
    await assert.rejects(
      uploadAttachment(server.url, { ...credentials(alice), password: "A".repeat(24) }, randomBytes(1000)),
      (e: unknown) => e instanceof ApiError && e.status === 401 && e.code === "unauthorized",
    );
    assert.deepEqual(filesIn(server), before);
  });

  it("answers unknown ids with 404, malformed ids with 400 and a Content-Encoding with 400", async () => {
    assertCode(
      await download(server, randomBytes(16).toString("base64url"), bob.authHeader),
      404,
      "not_found",
      "unknown id",
    );
    assertCode(await download(server, "..%2F..%2Fzimchat.db", bob.authHeader), 400, "invalid_request", "traversal");
    assertCode(await download(server, "short", bob.authHeader), 400, "invalid_request", "short id");
    await assert.rejects(
      downloadAttachment(server.url, credentials(bob), { ...big.pointer, id: randomBytes(16).toString("base64url") }),
      (e: unknown) => e instanceof ApiError && e.status === 404 && e.code === "not_found",
    );
    const before = filesIn(server);
    const gzip = await rawUpload(server, {
      auth: alice.authHeader,
      declared: 100,
      chunks: [randomBytes(100)],
      headers: { "content-encoding": "gzip" },
    });
    assertCode(gzip, 400, "invalid_request", "content-encoding");
    assert.deepEqual(filesIn(server), before);
  });

  it("documents both routes in /openapi.json with raw bodies", async () => {
    const res = await server.http().get("/openapi.json");
    const upload = res.body.paths["/v1/attachments"]?.post;
    const get = res.body.paths["/v1/attachments/{id}"]?.get;
    assert.ok(upload?.requestBody?.content?.["application/octet-stream"], "upload body is octet-stream");
    assert.ok(upload.responses["201"] && upload.responses["413"] && upload.responses["401"]);
    assert.ok(
      get?.responses?.["200"]?.content?.["application/octet-stream"] &&
        get.responses["206"] &&
        get.responses["416"] &&
        get.responses["404"],
    );
  });

  it("deletes an account's attachments (rows and files) with deleteForAccount", async () => {
    const carol = await server.register();
    const pointers = await Promise.all(
      [1, 2].map(() => uploadAttachment(server.url, credentials(carol), randomBytes(5000))),
    );
    assert.equal(await rowsOf(server, carol), 2);
    assert.equal(await server.home.services.attachments.deleteForAccount(carol.uuid), 2);
    assert.equal(await rowsOf(server, carol), 0);
    for (const p of pointers) assert.ok(!existsSync(join(attachmentDir(server), p.id)));
    assert.ok(existsSync(join(attachmentDir(server), big.pointer.id)), "other accounts' attachments stay");
  });

  it("logs no attachment ids, keys, digests or plaintext", async () => {
    assert.ok(
      logs.some((l) => l.includes("/v1/attachments")),
      "requests were logged (at trace)",
    );
    const all = logs.join("\n");
    for (const secret of [big.pointer.id, big.pointer.key, big.pointer.digest, marker.toString()])
      assert.ok(!all.includes(secret), "a secret in the logs");
  });
});

describe("attachment caps and quota", () => {
  let server: TestServer;
  const cap = 2 * MiB;
  const quota = 3 * MiB;
  before(async () => {
    server = await startServer({ attachmentMaxBytes: cap, attachmentQuotaBytes: quota });
  });
  after(async () => server.stop());

  it("refuses an upload over the cap by its Content-Length before reading it, and a chunked one while streaming", async () => {
    const alice = await server.register();
    // Headers only: the refusal does not wait for the body.
    const declared = await rawUpload(server, { auth: alice.authHeader, declared: cap + 1, chunks: [], holdBody: true });
    assertCode(declared, 413, "body_too_large", "Content-Length over the cap");
    const chunked = await rawUpload(server, { auth: alice.authHeader, chunks: repeat(randomBytes(64 * 1024), 48) });
    assertCode(chunked, 413, "body_too_large", "chunked over the cap");
    // Through the client module too, from a file (refused on its Content-Length while it streams), ten times over.
    const path = join(tmpdir(), `zimchat-over-cap-${process.pid}.bin`);
    writeFileSync(path, randomBytes(3 * MiB));
    try {
      for (let i = 0; i < 10; i++) {
        await assert.rejects(
          uploadAttachment(server.url, credentials(alice), path),
          (e: unknown) => e instanceof ApiError && e.status === 413 && e.code === "body_too_large",
        );
      }
    } finally {
      rmSync(path, { force: true });
    }
    assert.deepEqual(filesIn(server), []);
    // Exactly the cap is fine.
    const exact = await rawUpload(server, {
      auth: alice.authHeader,
      declared: cap,
      chunks: repeat(randomBytes(64 * 1024), cap / (64 * 1024)),
    });
    assert.equal(exact.status, 201);
    assert.deepEqual(filesIn(server), [exact.json!.id]);
    assert.equal(await rowsOf(server, alice), 1);
  });

  it("refuses uploads over the account's quota (declared, streamed, concurrent) with 413 quota_exceeded, storing nothing", async () => {
    const bob = await server.register();
    const before = filesIn(server);
    const chunk = randomBytes(64 * 1024);
    const first = await rawUpload(server, { auth: bob.authHeader, declared: 1.5 * MiB, chunks: repeat(chunk, 24) });
    const second = await rawUpload(server, { auth: bob.authHeader, declared: 1.5 * MiB, chunks: repeat(chunk, 24) });
    assert.equal(first.status, 201);
    assert.equal(second.status, 201, "exactly the quota is fine");
    assertCode(
      await rawUpload(server, { auth: bob.authHeader, declared: 1, chunks: [Buffer.alloc(1)] }),
      413,
      "quota_exceeded",
      "declared",
    );
    assertCode(
      await rawUpload(server, { auth: bob.authHeader, chunks: [Buffer.alloc(1)] }),
      413,
      "quota_exceeded",
      "chunked",
    );
    await assert.rejects(
      uploadAttachment(server.url, credentials(bob), randomBytes(1000)),
      (e: unknown) => e instanceof ApiError && e.status === 413 && e.code === "quota_exceeded",
    );
    assert.equal(await rowsOf(server, bob), 2);
    assert.equal(filesIn(server).length, before.length + 2);

    // Two concurrent uploads that each fit but not together: one is refused, and leaves nothing.
    const carol = await server.register();
    const racing = await Promise.all(
      [1, 2].map(() => rawUpload(server, { auth: carol.authHeader, chunks: repeat(chunk, 30), pauseMs: 5 })),
    );
    assert.deepEqual(racing.map((r) => r.status).sort(), [201, 413], JSON.stringify(racing.map((r) => r.json)));
    assert.equal(racing.find((r) => r.status === 413)!.json?.code, "quota_exceeded");
    assert.equal(await rowsOf(server, carol), 1);
    assert.equal(filesIn(server).length, before.length + 3);
    assert.ok(!filesIn(server).some((f) => f.endsWith(".part")));
  });

  it("sweep() on demand (last: it expires everything here): deletes what expired at the given time, and stale partial uploads", async () => {
    const erin = await server.register();
    const pointer = await uploadAttachment(server.url, credentials(erin), randomBytes(1000));
    const row = await server.home.database.prisma.attachment.findUniqueOrThrow({ where: { id: pointer.id } });
    // A leftover from a crash two days ago.
    const stale = join(attachmentDir(server), "crashed.part");
    writeFileSync(stale, randomBytes(10));
    const { utimesSync } = await import("node:fs");
    utimesSync(stale, new Date(Date.now() - 2 * 86_400_000), new Date(Date.now() - 2 * 86_400_000));
    const fresh = new (await import("../../src/services/attachment-service.js")).AttachmentService(
      new (await import("../../src/stores/attachment-store.js")).AttachmentStore(
        server.home.database.prisma,
        server.home.database.provider,
      ),
      { dir: attachmentDir(server), maxBytes: MiB, quotaBytes: MiB, ttlMs: 400 },
    );
    const swept = await fresh.sweep(Number(row.expiresAt));
    assert.ok(swept.expired >= 1 && swept.orphans >= 1, JSON.stringify(swept));
    assert.ok(!existsSync(stale));
    assert.ok(!existsSync(join(attachmentDir(server), pointer.id)));
  });
});

describe("attachment retention", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ attachmentTtlMs: 400, expirySweepMs: 100 });
  });
  after(async () => server.stop());

  it("the periodic sweep deletes expired attachments, files and rows; an expired one is 404 meanwhile", async () => {
    const dave = await server.register();
    const pointer = await uploadAttachment(server.url, credentials(dave), randomBytes(10_000));
    assert.ok(existsSync(join(attachmentDir(server), pointer.id)));
    // The TTL is 400 ms and the sweep runs every 100 ms: every attachment of this server goes.
    await until(
      async () => filesIn(server).length === 0 && (await server.home.database.prisma.attachment.count()) === 0,
      "the sweep",
      5000,
    );
    await assert.rejects(
      downloadAttachment(server.url, credentials(dave), pointer),
      (e: unknown) => e instanceof ApiError && e.code === "not_found",
    );
    // Quota is freed by expiry.
    assert.equal(await server.home.services.attachments.usage(dave.uuid), 0);
  });
});

describe("attachment encryption in memory", () => {
  it("encrypts with a fresh key and IV each time, and decrypts back", async () => {
    const plaintext = plaintextWithMarkers(70_000);
    const a = await encryptAttachmentBytes(plaintext);
    const b = await encryptAttachmentBytes(plaintext);
    assert.ok(!a.key.equals(b.key) && !a.blob.subarray(0, 12).equals(b.blob.subarray(0, 12)));
    assert.equal(a.blob.length, blobSize(plaintext.length));
    assert.equal(a.blob.indexOf(marker), -1);
    const pointer = {
      id: "A".repeat(22),
      key: a.key.toString("base64"),
      digest: a.digest.toString("base64"),
      size: a.size,
    };
    assert.ok(decryptAttachmentBytes(a.blob, pointer).equals(plaintext));
    assert.throws(
      () => decryptAttachmentBytes(a.blob, { ...pointer, key: "not base64" }),
      (e: unknown) => e instanceof AttachmentError && e.reason === AttachmentFailureReason.InvalidPointer,
    );
  });
});
