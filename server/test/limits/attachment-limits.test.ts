/**
 * Attachment uploads cannot overshoot the account's quota even when they run
 * concurrently (the quota is reserved when an upload starts), a stalled
 * upload is cut off and leaves no `.part` file, and an account's concurrent
 * uploads and stored attachments (zero-byte ones included) are capped.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, statSync } from "node:fs";
import { request as httpRequest, type ClientRequest } from "node:http";
import { join } from "node:path";
import type { ServerConfig } from "../../src/index.js";
import { roomyRateLimits, startServer, type TestServer } from "../support/harness.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const quota = MiB;

interface Answer {
  status: number;
  code?: string;
}

/**
 * A raw upload: `chunks` written `pauseMs` apart with a Content-Length of their total (or `declared`); the answer, or
 * status 0 if the connection closed without one.
 */
function upload(
  server: TestServer,
  auth: string,
  chunks: Buffer[],
  options: { pauseMs?: number; declared?: number; stallAfter?: number } = {},
): { answer: Promise<Answer>; req: ClientRequest } {
  const declared = options.declared ?? chunks.reduce((n, c) => n + c.length, 0);
  const req = httpRequest(new URL("/v1/attachments", server.url), {
    method: "POST",
    agent: false,
    headers: { authorization: auth, "content-type": "application/octet-stream", "content-length": String(declared) },
  });
  const answer = new Promise<Answer>((resolve) => {
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(text) as { code?: string }).code;
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, ...(code && { code }) });
      });
      res.on("error", () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on("error", () => resolve({ status: 0 }));
    req.on("close", () => setTimeout(() => resolve({ status: 0 }), 50));
  });
  void (async () => {
    for (const [i, chunk] of chunks.entries()) {
      if (options.stallAfter !== undefined && i >= options.stallAfter) return; // hold the connection, send nothing more
      if (req.destroyed) return;
      req.write(chunk);
      if (options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
    }
    if (!req.destroyed) req.end();
  })();
  return { answer, req };
}

const dirOf = (server: TestServer): string => join(server.dataDir, "attachments");
const files = (server: TestServer): string[] => (existsSync(dirOf(server)) ? readdirSync(dirOf(server)) : []);
const bytesOnDisk = (server: TestServer): number =>
  files(server).reduce((n, f) => n + (statSync(join(dirOf(server), f), { throwIfNoEntry: false })?.size ?? 0), 0);

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("attachment uploads: quota reserved at start, stalls cut off, concurrency and count capped", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({
      rateLimits: roomyRateLimits,
      attachmentMaxBytes: quota,
      attachmentQuotaBytes: quota,
      attachmentUploadIdleMs: 600,
      attachmentMinUploadBytesPerSecond: 1,
      attachmentMaxConcurrentUploads: 8,
      attachmentMaxCount: 4,
    } as Partial<ServerConfig>);
  });
  after(async () => server.stop());

  it("six concurrent 400 KiB uploads against a 1 MiB quota: never more than the quota on disk, the excess refused", async () => {
    const alice = await server.register();
    const chunk = Buffer.alloc(50 * KiB, 7);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, bytesOnDisk(server))), 5);
    const uploads = Array.from({ length: 6 }, () =>
      upload(
        server,
        alice.authHeader,
        Array.from({ length: 8 }, () => chunk),
        { pauseMs: 40 },
      ),
    );
    const answers = await Promise.all(uploads.map((u) => u.answer));
    clearInterval(sampler);
    const stored = answers.filter((a) => a.status === 201).length;
    console.log(`statuses ${answers.map((a) => a.status).join(",")}; peak bytes on disk ${peak} (quota ${quota})`);
    assert.equal(stored, 2, "two fit in the quota");
    for (const a of answers.filter((a) => a.status !== 201))
      assert.deepEqual(a, { status: 413, code: "quota_exceeded" });
    assert.ok(peak <= quota, `peak ${peak} bytes on disk > quota ${quota}`);
    assert.ok((await server.home.services.attachments.usage(alice.uuid)) <= quota);
    await until(() => !files(server).some((f) => f.endsWith(".part")), "no partial files");
  });

  it("a stalled upload is cut off: its .part file goes and its reservation is released", async () => {
    const bob = await server.register();
    const chunk = Buffer.alloc(64 * KiB, 1);
    const stalled = upload(
      server,
      bob.authHeader,
      Array.from({ length: 16 }, () => chunk),
      { stallAfter: 2 },
    );
    await until(() => files(server).some((f) => f.endsWith(".part")), "the partial file");
    const started = Date.now();
    await until(() => !files(server).some((f) => f.endsWith(".part")), "the stalled upload's partial file to go", 5000);
    console.log(`stalled upload cut off after ${Date.now() - started} ms`);
    const answer = await stalled.answer;
    assert.ok(answer.status === 408 || answer.status === 0, `stalled: ${JSON.stringify(answer)}`);
    stalled.req.destroy();
    // The whole quota is free again.
    const full = upload(
      server,
      bob.authHeader,
      Array.from({ length: 16 }, () => chunk),
    );
    assert.equal((await full.answer).status, 201);
  });

  it("caps concurrent uploads per account and stored attachments per account (zero-byte ones too); other users are still served", async () => {
    const carol = await server.register();
    const dave = await server.register();
    for (let i = 0; i < 4; i++)
      assert.equal((await upload(server, carol.authHeader, []).answer).status, 201, `zero-byte upload ${i}`);
    assert.deepEqual(await upload(server, carol.authHeader, []).answer, { status: 429, code: "too_many_attachments" });
    assert.equal(
      (await upload(server, dave.authHeader, [Buffer.alloc(10)]).answer).status,
      201,
      "another account is served",
    );
    const metrics = await server.http().get("/metrics");
    assert.match(metrics.text, /zimchat_refusals_total\{reason="too_many_attachments"\} [1-9]/);
  });
});

describe("attachment uploads: concurrent uploads per account", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({
      rateLimits: roomyRateLimits,
      attachmentMaxConcurrentUploads: 2,
      attachmentUploadIdleMs: 10_000,
    } as Partial<ServerConfig>);
  });
  after(async () => server.stop());

  it("a third upload while two are in flight is refused at once with too_many_uploads", async () => {
    const erin = await server.register();
    const frank = await server.register();
    const chunk = Buffer.alloc(16 * KiB);
    const slow = [0, 1].map(() => upload(server, erin.authHeader, [chunk, chunk], { stallAfter: 1 }));
    await until(() => files(server).filter((f) => f.endsWith(".part")).length === 2, "two uploads in flight");
    assert.deepEqual(await upload(server, erin.authHeader, [chunk]).answer, { status: 429, code: "too_many_uploads" });
    assert.equal((await upload(server, frank.authHeader, [chunk]).answer).status, 201, "another account is served");
    for (const s of slow) s.req.destroy();
    await until(() => !files(server).some((f) => f.endsWith(".part")), "aborted uploads removed");
    assert.equal(
      (await upload(server, erin.authHeader, [chunk]).answer).status,
      201,
      "slots are released when uploads end",
    );
    const metrics = await server.http().get("/metrics");
    assert.match(metrics.text, /zimchat_refusals_total\{reason="too_many_uploads"\} [1-9]/);
  });
});
