/**
 * Request bodies are parsed only on routes that take one, after the caller
 * is authenticated, under the route's own size limit and a nesting bound:
 * a hostile 2 MB deeply nested body costs the server almost nothing on a
 * 404, on an unauthenticated route, or from a stranger on an authenticated
 * route, and honest users keep their latency while several such senders
 * run in parallel.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { request as httpRequest } from "node:http";
import {
  base64Length,
  limits,
  routes,
  uploadKeysRequestSchema,
  multiRecipientRequestSchema,
  ackRequestSchema,
  confirmLinkRequestSchema,
} from "@zimchat/protocol";
import { readFileSync } from "node:fs";
import { startChildServer, type ChildServer } from "../support/child-server.js";
import { freshDatabase, registerDevice, startServer, roomyRateLimits, type TestServer } from "../support/harness.js";
import type { SignalDevice } from "@zimchat/testing/signal";

const MiB = 1024 * 1024;
/** A route's body limit from the protocol's table (0 when it states none). */
const limitOf = (route: object): number => (route as { maxBodyBytes?: number }).maxBodyBytes ?? 0;
/** ~2 MB of `[[[[...]]]]`: V8 spends hundreds of ms building a million nested arrays from it. */
const deep = Buffer.from("[".repeat(MiB) + "]".repeat(MiB));

interface Answer {
  status: number;
  body: string;
  connection: string | undefined;
}

/**
 * One raw HTTP request with `body`; resolves with the answer (or status 0 when the server reset the connection first).
 */
function send(
  url: string,
  method: string,
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve) => {
    const req = httpRequest(`${url}${path}`, {
      method,
      agent: false,
      headers: { "content-type": "application/json", "content-length": String(body.length), ...headers },
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, connection: res.headers.connection }));
      res.on("error", () => resolve({ status: res.statusCode ?? 0, body: text, connection: res.headers.connection }));
    });
    req.on("error", () => resolve({ status: 0, body: "", connection: undefined }));
    req.end(body);
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** CPU (user + system, ms) a child process has used so far, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

describe("request bodies: a hostile deep 2 MB body costs the server (a child process) almost nothing", () => {
  const db = freshDatabase();
  let server: ChildServer;
  let honest: SignalDevice;
  before(async () => {
    server = await startChildServer([
      "--data-dir",
      db.dataDir,
      "--database-url",
      db.url,
      "--registration",
      "open",
      "--rate-limits",
      "off",
      "--log-level",
      "warn",
    ]);
    honest = await registerDevice(server.url);
  });
  after(async () => {
    server.child.kill("SIGKILL");
    await server.exited;
    await db.drop();
  });

  const strangerAuth = `Basic ${Buffer.from(`${randomUUID()}.1:${"x".repeat(43)}`).toString("base64")}`;
  const targets = (): [string, string, string, Record<string, string>, number][] => [
    ["an unknown path", "POST", "/v1/no-such-route", {}, 404],
    ["a sealed send without an access key", "PUT", `/v1/messages/${honest.uuid}`, {}, 401],
    ["an authenticated route from a stranger", "PUT", "/v1/keys", { authorization: strangerAuth }, 401],
  ];

  it("refuses a deeply nested 2 MB body cheaply on a 404, an unauthenticated and an authenticated route", async () => {
    for (const [what, method, path, headers, status] of targets()) {
      const count = 6;
      const answers: Answer[] = [];
      const before = cpuOf(server.child.pid!);
      for (let i = 0; i < count; i++) answers.push(await send(server.url, method, path, deep, headers));
      const ms = cpuOf(server.child.pid!) - before;
      for (const a of answers) assert.equal(a.status, status, `${what}: ${a.body}`);
      const perRequest = ms / count;
      console.log(`${what}: ${perRequest.toFixed(1)} ms CPU per refused 2 MB request`);
      // Parsing the body cost ~400 ms; refusing it before reading costs 12-33 ms here (busy machine: generous bound).
      assert.ok(perRequest < 80, `${what}: ${perRequest.toFixed(1)} ms CPU per refused request`);
    }
  });

  it("keeps an honest user's latency near normal while four senders post deep 2 MB bodies", async () => {
    const whoami = async (): Promise<number> => {
      const started = performance.now();
      const res = await fetch(`${server.url}/v1/accounts/whoami`, { headers: { authorization: honest.authHeader } });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      return performance.now() - started;
    };
    const baseline: number[] = [];
    for (let i = 0; i < 15; i++) baseline.push(await whoami());
    let stop = false;
    let attacks = 0;
    const deadline = Date.now() + 10_000;
    const attacker = async (n: number): Promise<void> => {
      for (let i = 0; i < 60 && !stop && Date.now() < deadline; i++) {
        const [, method, path, headers] = targets()[(n + i) % 3]!;
        await send(server.url, method, path, deep, headers);
        attacks++;
      }
    };
    const attackers = [0, 1, 2, 3].map(attacker);
    const during: number[] = [];
    // Sample for a while once the hostile bodies flow (bounded in count and time).
    await new Promise((resolve) => setTimeout(resolve, 300));
    const window = Date.now() + 3_000;
    while (Date.now() < window && during.length < 300) during.push(await whoami());
    stop = true;
    await Promise.all(attackers);
    const [normal, attacked] = [median(baseline), median(during)];
    console.log(
      `honest whoami median: ${normal.toFixed(1)} ms alone, ${attacked.toFixed(1)} ms during ${attacks} hostile requests`,
    );
    assert.ok(attacks >= 8, "the attack ran");
    assert.ok(
      attacked < normal * 5 + 30,
      `honest median ${attacked.toFixed(1)} ms during the attack vs ${normal.toFixed(1)} ms alone`,
    );
  });
});

describe("request bodies: parsed only where a route takes one, after authentication, within its limit", () => {
  const adminToken = "a".repeat(32);
  let server: TestServer;
  let honest: SignalDevice;
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits, adminToken });
    honest = await server.register();
  });
  after(async () => server.stop());

  it("admin routes: the bearer token is checked before the body, which gets the small default limit", async () => {
    const big = Buffer.from(JSON.stringify({ maxUses: 1, padding: "x".repeat(16 * 1024) }));
    const stranger = await send(server.url, "POST", "/admin/v1/invites", deep);
    assert.equal(stranger.status, 401, stranger.body);
    const admin = { authorization: `Bearer ${adminToken}` };
    const tooBig = await send(server.url, "POST", "/admin/v1/invites", big, admin);
    assert.equal(tooBig.status, 413, tooBig.body);
    assert.equal(JSON.parse(tooBig.body).code, "body_too_large");
    const ok = await send(server.url, "POST", "/admin/v1/invites", Buffer.from(JSON.stringify({ maxUses: 2 })), admin);
    assert.equal(ok.status, 201, ok.body);
  });

  it("refuses deep nesting on a route that takes a body with too_deeply_nested, and an oversize body with body_too_large", async () => {
    const nested = Buffer.from(`{"ids":${"[".repeat(200)}${"]".repeat(200)}}`);
    const res = await send(server.url, "POST", "/v1/messages/ack", nested, { authorization: honest.authHeader });
    assert.equal(res.status, 400);
    assert.equal(JSON.parse(res.body).code, "too_deeply_nested");
    // The ack route's limit is tens of KiB, not megabytes.
    const big = Buffer.from(JSON.stringify({ ids: Array.from({ length: 20_000 }, () => randomUUID()) }));
    const tooBig = await send(server.url, "POST", "/v1/messages/ack", big, { authorization: honest.authHeader });
    assert.equal(tooBig.status, 413);
    assert.equal(JSON.parse(tooBig.body).code, "body_too_large");
    // A route without a body never reads one.
    const health = await send(server.url, "GET", "/healthz", deep);
    assert.equal(health.status, 200);
    const metrics = await server.http().get("/metrics");
    assert.match(metrics.text, /zimchat_refusals_total\{reason="too_deeply_nested"\} [1-9]/);
    assert.match(metrics.text, /zimchat_refusals_total\{reason="body_too_large"\} [1-9]/);
  });

  it("states each route's body limit in /openapi.json", async () => {
    const res = await server.http().get("/openapi.json");
    const op = res.body.paths["/v1/keys"].put;
    assert.equal(op.requestBody["x-max-body-bytes"], limitOf(routes.uploadKeys));
    assert.ok(res.body.paths["/v1/accounts"].post.requestBody["x-max-body-bytes"] <= 16 * 1024, "a small default");
  });
});

describe("request bodies: every legal maximal body fits its route's limit", () => {
  const b64 = (bytes: number): string => Buffer.alloc(bytes, 0x41).toString("base64");
  const signed = (bytes: number) => ({
    keyId: limits.maxKeyId,
    publicKey: b64(bytes),
    signature: b64(limits.signatureBytes),
  });
  const fits = (
    name: string,
    body: unknown,
    limit: number,
    schema: { safeParse(v: unknown): { success: boolean } },
  ): void => {
    assert.ok(schema.safeParse(body).success, `${name}: the maximal body is valid`);
    const size = Buffer.byteLength(JSON.stringify(body));
    assert.ok(size <= limit, `${name}: ${size} bytes > limit ${limit}`);
    console.log(`${name}: maximal legal body ${size} bytes, limit ${limit}`);
  };
  it("upload keys, multi-recipient sends, acks and link confirmations", () => {
    fits(
      "uploadKeys",
      {
        signedPreKey: signed(limits.ecPublicKeyBytes),
        pqLastResortPreKey: signed(limits.kyberPublicKeyBytes),
        preKeys: Array.from({ length: limits.maxKeysPerUpload }, () => ({
          keyId: limits.maxKeyId,
          publicKey: b64(limits.ecPublicKeyBytes),
        })),
        pqPreKeys: Array.from({ length: limits.maxKeysPerUpload }, () => signed(limits.kyberPublicKeyBytes)),
      },
      limitOf(routes.uploadKeys),
      uploadKeysRequestSchema,
    );
    fits(
      "sendMultiRecipient",
      {
        message: b64(limits.maxMultiRecipientBytes),
        accessKeys: Array.from({ length: limits.maxGroupRecipients }, () => ({
          uuid: randomUUID(),
          accessKey: b64(limits.accessKeyBytes),
        })),
      },
      limitOf(routes.sendMultiRecipient),
      multiRecipientRequestSchema,
    );
    fits(
      "ackMessages",
      { ids: Array.from({ length: limits.maxAckIds }, () => randomUUID()) },
      limitOf(routes.ackMessages),
      ackRequestSchema,
    );
    fits(
      "confirmLink",
      { provisioningMessage: b64(limits.maxProvisioningMessageBytes) },
      limitOf(routes.confirmLink),
      confirmLinkRequestSchema,
    );
    assert.equal(base64Length(3), 4);
  });
});
