/**
 * Bad input on every route and socket event: each refusal is a 4xx with the
 * exact machine-readable code, and changes no state (queues stay empty,
 * envelopes stay queued, usernames stay free, keys stay as they were).
 * Runs on SQLite, and on PostgreSQL when ZIMCHAT_TEST_DATABASE_URL names one.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { request as httpRequest } from "node:http";
import { gzipSync } from "node:zlib";
import { PrivateKey } from "@signalapp/libsignal-client";
import { io as connectClient, type Socket } from "socket.io-client";
import { bodyLimitOf, limits, routes, type Envelope, type RouteSpec } from "@zimchat/protocol";
import { defaultRateLimits, type RateLimits } from "../../src/index.js";
import { linkDevice, encryptFor, startServer, startSession, type TestServer } from "../support/harness.js";
import { SignalDevice } from "@zimchat/testing/signal";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

/** Default limits, but enough registrations and lookups for one test file from one address. */
const roomyLimits: RateLimits = {
  ...defaultRateLimits,
  register: { points: 10_000, durationSeconds: 3600 },
  usernameLookup: { points: 10_000, durationSeconds: 60 },
  // This file sends wrong credentials on purpose, many times, from one address.
  failedAuthPerAddress: { points: 10_000, durationSeconds: 60 },
  failedAuthPerAddressAndDevice: { points: 10_000, durationSeconds: 60 },
};

type Json = Record<string, any>;
type Message = {
  type: string;
  destinationDeviceId: unknown;
  destinationRegistrationId: unknown;
  content: unknown;
  [k: string]: unknown;
};
/** A bad send: the body's `messages` (or the whole body), and the refusal it must get. */
type BadSend = { name: string; body: Json | string; status: number; code: string; details?: Json };
/** Bad sends by kind, each kind its own test so one failure does not hide the others. */
const sendGroups = {
  shape: "unknown fields, wrong types, invalid device and registration ids, bad base64",
  content: "duplicate destination devices, plaintext and mislabelled ciphertext",
  size: "content over 96 KiB",
  devices: "missing, extra and stale devices",
} as const;
type SendGroup = keyof typeof sendGroups;

/**
 * Adds device `deviceId` to `owner`'s account directly in the database (the
 * protocol has no linking route yet), with keys signed by the account's
 * identity key. The returned device authenticates with its own password.
 */
/** The device's queued envelopes (GET /v1/messages). */
async function queue(server: TestServer, device: SignalDevice): Promise<Envelope[]> {
  const res = await server.http().get("/v1/messages").set("Authorization", device.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body as { envelopes: Envelope[] }).envelopes;
}

/** Asserts an error answer: exact status, exact code, a JSON body with a message. */
function assertRefused(
  res: { status: number; body: any; headers?: Record<string, unknown> },
  status: number,
  code: string,
  what: string,
): void {
  assert.equal(res.status, status, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.code, code, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(typeof res.body.message, "string", what);
  if (res.headers) assert.match(String(res.headers["content-type"]), /^application\/json/, what);
}

/** A refusal as one comparable record: name, status, code and the device lists when present. */
function outcome(name: string, status: unknown, code: unknown, details: Json): Json {
  const defined = Object.fromEntries(Object.entries(details).filter(([, v]) => v !== undefined));
  return { name, status, code, ...defined };
}

/** Sends a raw string body (not re-encoded by Supertest). */
function sendRaw(server: TestServer, method: RouteSpec["method"], path: string, body: string | Buffer, auth?: string) {
  const req = server.http()[method](path).set("Content-Type", "application/json");
  if (auth) req.set("Authorization", auth);
  return req.send(body);
}

/**
 * One HTTP request with exactly these bytes (Supertest would re-encode a
 * Buffer as JSON), written in 64 KiB chunks; no Content-Length when
 * `chunked`.
 */
function rawRequest(
  server: TestServer,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  chunked = false,
): Promise<{ status: number; body: any; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      new URL(path, server.url),
      // A fresh connection: a pooled one the server closed after a refusal would fail with ECONNRESET.
      {
        method,
        agent: false,
        headers: {
          ...headers,
          ...(chunked ? { "transfer-encoding": "chunked" } : { "content-length": String(body.length) }),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text), headers: res.headers });
          } catch {
            resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers });
          }
        });
      },
    );
    req.on("error", reject);
    for (let i = 0; i < body.length; i += 64 * 1024) req.write(body.subarray(i, i + 64 * 1024));
    req.end();
  });
}

/** Emits with an acknowledgement and a timeout, bypassing the typed event map. */
function emitRaw(socket: Socket, event: string, ...args: unknown[]): Promise<any> {
  return emitWithin(15_000, socket, event, ...args);
}

function emitWithin(timeoutMs: number, socket: Socket, event: string, ...args: unknown[]): Promise<any> {
  return socket.timeout(timeoutMs).emitWithAck(event, ...args);
}

/** The `data` of the connect_error a connection attempt gets (fails if it connects). */
async function connectError(url: string, auth?: unknown): Promise<unknown> {
  const socket = connectClient(url, {
    ...(auth === undefined ? {} : { auth: auth as Record<string, unknown> }),
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
  });
  try {
    return await new Promise((resolve, reject) => {
      socket.once("connect", () => reject(new Error("connected without valid credentials")));
      socket.once("connect_error", (error) => resolve((error as Error & { data?: unknown }).data));
      setTimeout(() => reject(new Error("no connect_error")), 5000).unref();
    });
  } finally {
    socket.close();
  }
}

describe("bad input", () => {
  let server: TestServer;
  let alice: SignalDevice;
  let alice2: SignalDevice;
  let bob: SignalDevice;
  let carol: SignalDevice;
  /** A genuine PreKeySignalMessage and SignalMessage, for templates (the server only parses them). */
  let prekeyContent: string;
  let whisperContent: string;
  const bobName = "bob_bad_input";

  /** A valid message from alice to bob's device 1. */
  const message = (overrides: Partial<Message> = {}): Message => ({
    type: "prekey",
    destinationDeviceId: 1,
    destinationRegistrationId: bob.registrationId,
    content: prekeyContent,
    ...overrides,
  });

  /** Every bad send to bob, with the refusal it must get (HTTP and socket alike). */
  function badSends(group: SendGroup): BadSend[] {
    const plaintext = b64(Buffer.from("Hello Bob, this is not encrypted at all."));
    const big = (bytes: number): string => b64(randomBytes(bytes));
    const m = message;
    const cases: Record<SendGroup, BadSend[]> = {
      shape: [
        {
          name: "unknown top-level field",
          body: { messages: [m()], urgent: true },
          status: 400,
          code: "invalid_request",
        },
        {
          name: "unknown message field",
          body: { messages: [m({ sealed: true })] },
          status: 400,
          code: "invalid_request",
        },
        {
          name: "__proto__ field",
          body: `{"messages":${JSON.stringify([m()])},"__proto__":{"admin":true}}`,
          status: 400,
          code: "invalid_request",
        },
        {
          name: "constructor field",
          body: { messages: [m({ constructor: 1 })] },
          status: 400,
          code: "invalid_request",
        },
        { name: "messages missing", body: {}, status: 400, code: "invalid_request" },
        { name: "messages empty", body: { messages: [] }, status: 400, code: "invalid_request" },
        { name: "messages an object", body: { messages: m() }, status: 400, code: "invalid_request" },
        { name: "messages a string", body: { messages: "hello" }, status: 400, code: "invalid_request" },
        { name: "body an array", body: "[]", status: 400, code: "invalid_request" },
        {
          name: "128 messages",
          body: { messages: Array.from({ length: 128 }, (_, i) => m({ destinationDeviceId: (i % 127) + 1 })) },
          status: 400,
          code: "invalid_request",
        },
        { name: "type unknown", body: { messages: [m({ type: "plaintext" })] }, status: 400, code: "invalid_request" },
        {
          name: "type a number",
          body: { messages: [m({ type: 3 as unknown as string })] },
          status: 400,
          code: "invalid_request",
        },
        {
          name: "type missing",
          body: {
            messages: [
              { destinationDeviceId: 1, destinationRegistrationId: bob.registrationId, content: prekeyContent },
            ],
          },
          status: 400,
          code: "invalid_request",
        },
        ...[0, -1, 128, "1e3", "1", 1.5, null, true].map((id) => ({
          name: `destinationDeviceId ${JSON.stringify(id)}`,
          body: { messages: [m({ destinationDeviceId: id })] },
          status: 400,
          code: "invalid_request",
        })),
        {
          name: "destinationDeviceId 1e3 (number)",
          body: `{"messages":[{"type":"prekey","destinationDeviceId":1e3,"destinationRegistrationId":${bob.registrationId},"content":"${prekeyContent}"}]}`,
          status: 400,
          code: "invalid_request",
        },
        ...[0, 16381, -5, "7", 2.5].map((id) => ({
          name: `destinationRegistrationId ${JSON.stringify(id)}`,
          body: { messages: [m({ destinationRegistrationId: id })] },
          status: 400,
          code: "invalid_request",
        })),
        {
          name: "content not base64",
          body: { messages: [m({ content: "this is not base64!" })] },
          status: 400,
          code: "invalid_request",
        },
        {
          name: "content unpadded base64",
          body: { messages: [m({ content: b64(Buffer.from("abcd")).replace(/=+$/, "") })] },
          status: 400,
          code: "invalid_request",
        },
        {
          name: "content base64url",
          body: {
            messages: [
              m({
                content: b64(Buffer.from([0xfb, 0xff, 0xbf, 0xfe]))
                  .replace(/\+/g, "-")
                  .replace(/\//g, "_"),
              }),
            ],
          },
          status: 400,
          code: "invalid_request",
        },
        {
          name: "content with a line break",
          body: { messages: [m({ content: `${prekeyContent.slice(0, 8)}\n${prekeyContent.slice(8)}` })] },
          status: 400,
          code: "invalid_request",
        },
        { name: "content empty", body: { messages: [m({ content: "" })] }, status: 400, code: "invalid_request" },
        { name: "content a number", body: { messages: [m({ content: 12345 })] }, status: 400, code: "invalid_request" },
        {
          name: "content an array of bytes",
          body: { messages: [m({ content: [1, 2, 3] })] },
          status: 400,
          code: "invalid_request",
        },
      ],
      content: [
        { name: "duplicate destination device", body: { messages: [m(), m()] }, status: 400, code: "invalid_request" },
        {
          name: "plaintext as a prekey message",
          body: { messages: [m({ content: plaintext })] },
          status: 400,
          code: "invalid_ciphertext",
        },
        {
          name: "plaintext as a whisper message",
          body: { messages: [m({ type: "whisper", content: plaintext })] },
          status: 400,
          code: "invalid_ciphertext",
        },
        {
          name: "random bytes as a whisper message",
          body: { messages: [m({ type: "whisper", content: big(200) })] },
          status: 400,
          code: "invalid_ciphertext",
        },
        {
          name: "a prekey message labelled whisper",
          body: { messages: [m({ type: "whisper" })] },
          status: 400,
          code: "invalid_ciphertext",
        },
        {
          name: "a whisper message labelled prekey",
          body: { messages: [m({ content: whisperContent })] },
          status: 400,
          code: "invalid_ciphertext",
        },
      ],
      size: [
        {
          name: "content of 96 KiB + 1 byte",
          body: { messages: [m({ content: big(limits.maxContentBytes + 1) })] },
          status: 413,
          code: "content_too_large",
        },
        {
          name: "content of 96 KiB + 4 bytes",
          body: { messages: [m({ content: big(limits.maxContentBytes + 4) })] },
          status: 413,
          code: "content_too_large",
        },
        {
          name: "content of 1 MiB (body under 2 MiB)",
          body: { messages: [m({ content: big(1024 * 1024) })] },
          status: 413,
          code: "content_too_large",
        },
      ],
      devices: [
        {
          name: "a device bob does not have (missing 1, extra 2)",
          body: { messages: [m({ destinationDeviceId: 2 })] },
          status: 409,
          code: "mismatched_devices",
          details: { missingDevices: [1], extraDevices: [2] },
        },
        {
          name: "an extra device",
          body: { messages: [m(), m({ destinationDeviceId: 2 }), m({ destinationDeviceId: 127 })] },
          status: 409,
          code: "mismatched_devices",
          details: { missingDevices: [], extraDevices: [2, 127] },
        },
        {
          name: "a wrong registration id",
          body: { messages: [m({ destinationRegistrationId: (bob.registrationId % 16380) + 1 })] },
          status: 410,
          code: "stale_devices",
          details: { staleDevices: [1] },
        },
        {
          name: "a wrong registration id and an extra device (410 wins)",
          body: {
            messages: [
              m({ destinationRegistrationId: (bob.registrationId % 16380) + 1 }),
              m({ destinationDeviceId: 3 }),
            ],
          },
          status: 410,
          code: "stale_devices",
          details: { staleDevices: [1] },
        },
      ],
    };
    return cases[group];
  }

  before(async () => {
    server = await startServer({ rateLimits: roomyLimits });
    alice = await server.register("alice_bad_input");
    bob = await server.register(bobName);
    carol = await server.register("carol_bad_input");
    alice2 = (await linkDevice(server, alice)).device;
    await startSession(server, alice, bob);
    const [first] = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "first",
    );
    assert.equal(first?.type, "prekey");
    prekeyContent = first.content;
    // Bob decrypts, so his reply is a plain SignalMessage.
    assert.equal(await bob.decrypt(alice.uuid, 1, "prekey", prekeyContent), "first");
    const [reply] = await encryptFor(
      bob,
      { uuid: alice.uuid, devices: [{ deviceId: 1, registrationId: alice.registrationId }] },
      "reply",
    );
    assert.equal(reply?.type, "whisper");
    whisperContent = reply.content;
  });
  after(async () => server.stop());

  describe("every route", () => {
    const concrete = (path: string): string =>
      path
        .replace(":uuid", bob.uuid)
        .replace(":deviceId", "1")
        .replace(":username", bobName)
        .replace(":code", "A".repeat(22))
        .replace(":server", "chat.example");
    // Federation routes take only signed requests (404 here, federation off): test/federation covers their bodies.
    const all = (Object.entries(routes) as [string, RouteSpec][]).filter(([, route]) => route.auth !== "server");

    // Only routes that take a body read one: the others ignore it, unparsed.
    const withBody = all.filter(([, route]) => route.body);

    it("answers malformed JSON with 400 malformed_json on every route that takes a body; the others never parse one", async () => {
      for (const [name, route] of withBody) {
        const res = await sendRaw(server, route.method, concrete(route.path), '{"messages": [', alice.authHeader);
        assertRefused(res, 400, "malformed_json", name);
      }
      for (const [name, route] of all.filter(([, r]) => !r.body)) {
        const res = await sendRaw(server, route.method, concrete(route.path), '{"messages": [', alice.authHeader);
        assert.notEqual(res.body?.code, "malformed_json", name);
      }
      for (const body of [
        '{"ids": ["a",]}',
        "{'ids': []}",
        '{"ids": NaN}',
        "42",
        '"ids"',
        "null",
        "true",
        '{"ids": [] } trailing',
        "\u0000",
      ]) {
        const res = await sendRaw(server, "post", "/v1/messages/ack", body, alice.authHeader);
        assertRefused(res, 400, "malformed_json", JSON.stringify(body));
      }
    });

    it("answers a body over the route's limit (2 MiB and more) with 413 body_too_large", async () => {
      const huge = JSON.stringify({ padding: "x".repeat(Math.max(...withBody.map(([, r]) => bodyLimitOf(r)))) });
      for (const [name, route] of withBody) {
        const res = await sendRaw(server, route.method, concrete(route.path), huge, alice.authHeader);
        assertRefused(res, 413, "body_too_large", name);
      }
    });

    it("answers a chunked body over 2 MiB (no Content-Length) with 413 body_too_large, and stores nothing", async () => {
      const messages = Array.from({ length: 30 }, () => message({ content: b64(randomBytes(limits.maxContentBytes)) }));
      const body = Buffer.from(JSON.stringify({ messages }));
      assert.ok(body.length > limits.maxBodyBytes);
      const headers = { "content-type": "application/json", authorization: alice.authHeader };
      const answer = await rawRequest(server, "PUT", `/v1/messages/${bob.uuid}`, headers, body, true);
      assertRefused(answer, 413, "body_too_large", "chunked");
      assert.deepEqual(await queue(server, bob), []);
    });

    it("answers a gzip body that inflates past 2 MiB with 413 body_too_large", async () => {
      const headers = {
        "content-type": "application/json",
        "content-encoding": "gzip",
        authorization: alice.authHeader,
      };
      const bomb = gzipSync(JSON.stringify({ preKeys: [], padding: "0".repeat(32 * 1024 * 1024) }));
      assert.ok(bomb.length < 128 * 1024);
      const res = await rawRequest(server, "PUT", "/v1/keys", headers, bomb);
      assertRefused(res, 413, "body_too_large", "gzip bomb");
      // A well-formed small gzip body is fine, so the refusal above is about size.
      const small = await rawRequest(server, "PUT", "/v1/keys", headers, gzipSync("{}"));
      assert.equal(small.status, 204, JSON.stringify(small.body));
    });

    it("answers a body that is not valid gzip with 400 malformed_json, not a 500", async () => {
      const headers = {
        "content-type": "application/json",
        "content-encoding": "gzip",
        authorization: alice.authHeader,
      };
      const cases = [
        ["plain JSON labelled gzip", Buffer.from("{}")],
        ["truncated gzip", gzipSync(JSON.stringify({ ids: [randomUUID()] })).subarray(0, 20)],
        ["gzip then garbage", Buffer.concat([gzipSync("{}"), Buffer.from("garbage")])],
      ] as const;
      const actual: Json[] = [];
      for (const [name, body] of cases) {
        const res = await rawRequest(server, "POST", "/v1/messages/ack", headers, body);
        actual.push(outcome(name, res.status, res.body?.code, {}));
      }
      assert.deepEqual(
        actual,
        cases.map(([name]) => outcome(name, 400, "malformed_json", {})),
      );
    });

    it("answers an unsupported content encoding or charset with 400 invalid_request", async () => {
      const encoding = await server
        .http()
        .put("/v1/keys")
        .set("Authorization", alice.authHeader)
        .set("Content-Type", "application/json")
        .set("Content-Encoding", "compress-9000")
        .send("{}");
      assertRefused(encoding, 400, "invalid_request", "content-encoding");
      const charset = await server
        .http()
        .put("/v1/keys")
        .set("Authorization", alice.authHeader)
        .set("Content-Type", "application/json; charset=klingon")
        .send("{}");
      assertRefused(charset, 400, "invalid_request", "charset");
    });

    it("answers unknown routes with 404 not_found JSON, and unserved methods on known paths with 405 and Allow", async () => {
      const unserved: [RouteSpec["method"] | "patch", string, string][] = [
        ["get", "/v1/accounts", "POST"],
        ["delete", "/v1/keys", "PUT"],
        ["post", "/v1/keys/count", "GET, HEAD"],
        ["patch", "/v1/messages/ack", "POST, PUT"],
        ["get", "/v1/messages/ack", "POST, PUT"],
        ["put", "/v1/messages", "GET, HEAD"],
      ];
      for (const [method, path, allow] of unserved) {
        const res = await server.http()[method](path).set("Authorization", alice.authHeader);
        assertRefused(res, 405, "method_not_allowed", `${method.toUpperCase()} ${path}`);
        assert.equal(res.headers.allow, allow, `${method.toUpperCase()} ${path}: Allow`);
      }
      const unknown: [RouteSpec["method"] | "patch", string][] = [
        ["get", "/"],
        ["get", "/nope"],
        ["get", "/v2/keys/count"],
        ["get", `/v1/keys/${bob.uuid}`],
        ["get", `/v1/keys/${bob.uuid}/1/extra`],
        ["get", "/openapi.yaml"],
        ["get", "/.env"],
        ["get", "/socket.io.js"],
      ];
      for (const [method, path] of unknown) {
        const res = await server.http()[method](path).set("Authorization", alice.authHeader);
        assertRefused(res, 404, "not_found", `${method.toUpperCase()} ${path}`);
      }
      // Unauthenticated too.
      assertRefused(await server.http().get("/nope"), 404, "not_found", "GET /nope without credentials");
    });
  });

  describe("path parameters", () => {
    it("invalid device ids in paths: 400 invalid_request, and nothing is claimed", async () => {
      assert.equal(
        (await server.http().put("/v1/keys").set("Authorization", bob.authHeader).send(bob.keyUpload(3, 3))).status,
        204,
      );
      for (const id of ["0", "-1", "128", "1e3", "01", "1.0", "0x1", "1000", "%201", "one", "**", "%2F"]) {
        const res = await server.http().get(`/v1/keys/${bob.uuid}/${id}`).set("Authorization", alice.authHeader);
        assertRefused(res, 400, "invalid_request", `device id ${id}`);
      }
      const count = await server.http().get("/v1/keys/count").set("Authorization", bob.authHeader);
      assert.deepEqual(count.body, { ecCount: 3, pqCount: 3 });
    });

    it("invalid account ids and usernames in paths: 400 invalid_request", async () => {
      const paths = [
        "/v1/keys/not-a-uuid/1",
        `/v1/keys/${bob.uuid.toUpperCase()}/1`,
        `/v1/keys/${bob.uuid.replace(/-/g, "")}/1`,
        `/v1/keys/{${bob.uuid}}/*`,
        "/v1/accounts/username/ab",
        "/v1/accounts/username/Bob_Bad_Input",
        "/v1/accounts/username/bad-name",
        `/v1/accounts/username/${"a".repeat(33)}`,
      ];
      for (const path of paths) {
        const res = await server.http().get(path).set("Authorization", alice.authHeader);
        assertRefused(res, 400, "invalid_request", path);
      }
      const send = await server
        .http()
        .put("/v1/messages/not-a-uuid")
        .set("Authorization", alice.authHeader)
        .send({ messages: [message()] });
      assertRefused(send, 400, "invalid_request", "send to not-a-uuid");
    });

    it("undecodable percent-escapes in paths: 400 invalid_request, not a 500", async () => {
      const paths = [
        `/v1/keys/${bob.uuid}/%E0%A4%A`,
        "/v1/keys/%zz/1",
        "/v1/accounts/username/%ff",
        "/v1/messages/%E0%A4%A",
      ];
      const actual: Json[] = [];
      for (const path of paths) {
        const method = path.startsWith("/v1/messages/") ? "put" : "get";
        const res = await server
          .http()
          [method](path)
          .set("Authorization", alice.authHeader)
          .send({ messages: [message()] });
        actual.push(outcome(path, res.status, res.body?.code, {}));
      }
      assert.deepEqual(
        actual,
        paths.map((path) => outcome(path, 400, "invalid_request", {})),
      );
      assert.deepEqual(await queue(server, bob), []);
    });
  });

  describe("sending", () => {
    for (const [group, description] of Object.entries(sendGroups) as [SendGroup, string][]) {
      it(`over HTTP, ${description}: refused with the exact status and code; bob's queue stays empty`, async () => {
        const actual: Json[] = [];
        const expected: Json[] = [];
        for (const c of badSends(group)) {
          const req = server.http().put(`/v1/messages/${bob.uuid}`).set("Authorization", alice.authHeader);
          const res =
            typeof c.body === "string"
              ? await req.set("Content-Type", "application/json").send(c.body)
              : await req.send(c.body);
          assert.match(String(res.headers["content-type"]), /^application\/json/, c.name);
          const { missingDevices, extraDevices, staleDevices } = res.body as Json;
          actual.push(outcome(c.name, res.status, res.body.code, { missingDevices, extraDevices, staleDevices }));
          expected.push(outcome(c.name, c.status, c.code, c.details ?? {}));
        }
        assert.deepEqual(actual, expected);
        assert.deepEqual(await queue(server, bob), []);
      });
    }

    it("the message the refusals were measured against is accepted", async () => {
      const ok = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: [message()] });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const queued = await queue(server, bob);
      assert.equal(queued.length, 1);
      const acked = await server
        .http()
        .post("/v1/messages/ack")
        .set("Authorization", bob.authHeader)
        .send({ ids: queued.map((e) => e.id) });
      assert.deepEqual(acked.body, { deleted: 1 });
    });

    it("a send to an unknown account is 404 not_found", async () => {
      const res = await server
        .http()
        .put(`/v1/messages/${randomUUID()}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: [message()] });
      assertRefused(res, 404, "not_found", "unknown account");
    });

    it("device-set rules on a two-device recipient: missing, stale, and 410 over 409", async () => {
      const to = (deviceId: number, registrationId: number): Message =>
        message({ destinationDeviceId: deviceId, destinationRegistrationId: registrationId });
      const cases: { name: string; messages: Message[]; status: number; code: string; details: Json }[] = [
        {
          name: "device 2 missing",
          messages: [to(1, alice.registrationId)],
          status: 409,
          code: "mismatched_devices",
          details: { missingDevices: [2], extraDevices: [] },
        },
        {
          name: "device 1 missing, 3 extra",
          messages: [to(2, alice2.registrationId), to(3, 77)],
          status: 409,
          code: "mismatched_devices",
          details: { missingDevices: [1], extraDevices: [3] },
        },
        {
          name: "device 2 stale",
          messages: [to(1, alice.registrationId), to(2, (alice2.registrationId % 16380) + 1)],
          status: 410,
          code: "stale_devices",
          details: { staleDevices: [2] },
        },
        {
          name: "both stale",
          messages: [to(2, (alice2.registrationId % 16380) + 1), to(1, (alice.registrationId % 16380) + 1)],
          status: 410,
          code: "stale_devices",
          details: { staleDevices: [1, 2] },
        },
        {
          name: "device 1 stale and device 2 missing",
          messages: [to(1, (alice.registrationId % 16380) + 1)],
          status: 410,
          code: "stale_devices",
          details: { staleDevices: [1] },
        },
      ];
      for (const c of cases) {
        const res = await server
          .http()
          .put(`/v1/messages/${alice.uuid}`)
          .set("Authorization", carol.authHeader)
          .send({ messages: c.messages });
        assertRefused(res, c.status, c.code, c.name);
        for (const [key, value] of Object.entries(c.details))
          assert.deepEqual(res.body[key], value, `${c.name}: ${key}`);
      }
      assert.deepEqual(await queue(server, alice), []);
      assert.deepEqual(await queue(server, alice2), []);
    });

    it("a send to oneself must name every own device except the sender's", async () => {
      const to = (deviceId: number, registrationId: number): Message =>
        message({ destinationDeviceId: deviceId, destinationRegistrationId: registrationId });
      const refused: { name: string; from: SignalDevice; messages: Message[]; details: Json }[] = [
        {
          name: "alice.1 names itself and device 2",
          from: alice,
          messages: [to(1, alice.registrationId), to(2, alice2.registrationId)],
          details: { missingDevices: [], extraDevices: [1] },
        },
        {
          name: "alice.1 names only itself",
          from: alice,
          messages: [to(1, alice.registrationId)],
          details: { missingDevices: [2], extraDevices: [1] },
        },
        {
          name: "alice.2 names only itself",
          from: alice2,
          messages: [to(2, alice2.registrationId)],
          details: { missingDevices: [1], extraDevices: [2] },
        },
        {
          name: "single-device carol names herself",
          from: carol,
          messages: [to(1, carol.registrationId)],
          details: { missingDevices: [], extraDevices: [1] },
        },
      ];
      for (const c of refused) {
        const res = await server
          .http()
          .put(`/v1/messages/${c.from.uuid}`)
          .set("Authorization", c.from.authHeader)
          .send({ messages: c.messages });
        assertRefused(res, 409, "mismatched_devices", c.name);
        for (const [key, value] of Object.entries(c.details))
          assert.deepEqual(res.body[key], value, `${c.name}: ${key}`);
      }
      for (const device of [alice, alice2, carol]) assert.deepEqual(await queue(server, device), []);

      const ok = await server
        .http()
        .put(`/v1/messages/${alice.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: [to(2, alice2.registrationId)] });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const fromTwo = await server
        .http()
        .put(`/v1/messages/${alice.uuid}`)
        .set("Authorization", alice2.authHeader)
        .send({ messages: [to(1, alice.registrationId)] });
      assert.equal(fromTwo.status, 200, JSON.stringify(fromTwo.body));
      const [toTwo] = await queue(server, alice2);
      const [toOne] = await queue(server, alice);
      assert.equal(toTwo?.sourceDeviceId, 1);
      assert.equal(toOne?.sourceDeviceId, 2);
      for (const [device, envelope] of [
        [alice2, toTwo!],
        [alice, toOne!],
      ] as const) {
        const acked = await server
          .http()
          .post("/v1/messages/ack")
          .set("Authorization", device.authHeader)
          .send({ ids: [envelope.id] });
        assert.deepEqual(acked.body, { deleted: 1 });
      }
    });
  });

  describe("acknowledging", () => {
    it("bad ack bodies are 400 invalid_request", async () => {
      const bodies: [string, unknown][] = [
        ["ids missing", {}],
        ["ids empty", { ids: [] }],
        ["ids a string", { ids: randomUUID() }],
        ["ids numbers", { ids: [1, 2] }],
        ["ids not uuids", { ids: ["not-a-uuid"] }],
        ["ids upper-case", { ids: [randomUUID().toUpperCase()] }],
        ["1001 ids", { ids: Array.from({ length: 1001 }, () => randomUUID()) }],
        ["unknown field", { ids: [randomUUID()], all: true }],
        ["body an array", [randomUUID()]],
      ];
      for (const [name, body] of bodies) {
        const res = await server
          .http()
          .post("/v1/messages/ack")
          .set("Authorization", bob.authHeader)
          .send(body as object);
        assertRefused(res, 400, "invalid_request", name);
      }
    });

    it("someone else's envelope ids: answered exactly like deleted ones (no delivery oracle), and still queued", async () => {
      const toBob = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: [message()] });
      assert.equal(toBob.status, 200, JSON.stringify(toBob.body));
      const toCarol = await server
        .http()
        .put(`/v1/messages/${carol.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: [message({ destinationRegistrationId: carol.registrationId })] });
      assert.equal(toCarol.status, 200, JSON.stringify(toCarol.body));
      const toAlice2 = await server
        .http()
        .put(`/v1/messages/${alice.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: [message({ destinationDeviceId: 2, destinationRegistrationId: alice2.registrationId })] });
      assert.equal(toAlice2.status, 200, JSON.stringify(toAlice2.body));
      const bobs = (await queue(server, bob)).map((e) => e.id);
      const carols = (await queue(server, carol)).map((e) => e.id);
      const alice2s = (await queue(server, alice2)).map((e) => e.id);
      assert.equal(bobs.length, 1);
      assert.equal(carols.length, 1);
      assert.equal(alice2s.length, 1);

      const attempts: [string, SignalDevice, string[]][] = [
        ["carol acks bob's", carol, bobs],
        ["carol acks bob's and an unknown one", carol, [...bobs, randomUUID()]],
        ["alice.1 acks alice.2's (same account, other device)", alice, alice2s],
        ["bob acks carol's twice", bob, [...carols, ...carols]],
      ];
      const deletedAnswer = await server
        .http()
        .post("/v1/messages/ack")
        .set("Authorization", carol.authHeader)
        .send({ ids: [randomUUID()] });
      for (const [name, device, ids] of attempts) {
        const res = await server.http().post("/v1/messages/ack").set("Authorization", device.authHeader).send({ ids });
        assert.deepEqual([res.status, res.body], [deletedAnswer.status, deletedAnswer.body], name);
        assert.deepEqual([res.status, res.body], [200, { deleted: 0 }], name);
      }
      assert.deepEqual(
        (await queue(server, bob)).map((e) => e.id),
        bobs,
      );
      assert.deepEqual(
        (await queue(server, carol)).map((e) => e.id),
        carols,
      );
      assert.deepEqual(
        (await queue(server, alice2)).map((e) => e.id),
        alice2s,
      );
      // Mixed with the caller's own: only the caller's own are deleted.
      const mixed = await server
        .http()
        .post("/v1/messages/ack")
        .set("Authorization", carol.authHeader)
        .send({ ids: [...bobs, randomUUID(), ...carols] });
      assert.deepEqual([mixed.status, mixed.body], [200, { deleted: 1 }]);
      assert.deepEqual(
        (await queue(server, carol)).map((e) => e.id),
        [],
      );
      assert.deepEqual(
        (await queue(server, bob)).map((e) => e.id),
        bobs,
      );

      // Unknown ids are ignored (acks are idempotent); own ids still work.
      const unknown = await server
        .http()
        .post("/v1/messages/ack")
        .set("Authorization", carol.authHeader)
        .send({ ids: [randomUUID()] });
      assert.deepEqual([unknown.status, unknown.body], [200, { deleted: 0 }]);
      for (const [device, ids] of [
        [bob, bobs],
        [alice2, alice2s],
      ] as const) {
        const res = await server
          .http()
          .post("/v1/messages/ack")
          .set("Authorization", device.authHeader)
          .send({ ids: [...ids] });
        assert.deepEqual([res.status, res.body], [200, { deleted: 1 }]);
        assert.deepEqual(await queue(server, device), []);
      }
    });
  });

  describe("registration", () => {
    const accountCount = (): Promise<number> => server.home.database.prisma.account.count();
    const lookup = async (username: string): Promise<number> =>
      (
        await server
          .http()
          .get(`/v1/accounts/username/${encodeURIComponent(username)}`)
          .set("Authorization", alice.authHeader)
      ).status;

    it("refuses bad usernames, passwords, registration ids, keys and signatures, and creates no account", async () => {
      const stranger = PrivateKey.generate();
      type Case = [string, number, string, (body: Json, device: SignalDevice) => void];
      const flip = (s: string, i: number): string => {
        const bytes = Buffer.from(s, "base64");
        bytes[i] = bytes[i]! ^ 1;
        return bytes.toString("base64");
      };
      const cases: Case[] = [
        ...["ab", "a".repeat(33), "Alice", "bad-name", "has space", "naïve", "", "user@example", "ab\n", "../etc"].map(
          (u): Case => [`username ${JSON.stringify(u)}`, 400, "invalid_request", (b) => void (b.username = u)],
        ),
        ["username a number", 400, "invalid_request", (b) => void (b.username = 12345)],
        [
          `password of ${limits.minPasswordLength - 1} characters`,
          400,
          "invalid_request",
          (b) => void (b.password = "A".repeat(limits.minPasswordLength - 1)),
        ],
        [
          "password of 129 characters",
          400,
          "invalid_request",
          (b) => void (b.password = "A".repeat(limits.maxPasswordLength + 1)),
        ],
        ["password with a colon", 400, "invalid_request", (b) => void (b.password = `${"A".repeat(24)}:x`)],
        ["password missing", 400, "invalid_request", (b) => void delete b.password],
        ...[0, 16381, -1, 1.5, "5", null].map((id): Case => [
          `registrationId ${JSON.stringify(id)}`,
          400,
          "invalid_request",
          (b) => void (b.registrationId = id),
        ]),
        ["unknown field", 400, "invalid_request", (b) => void (b.admin = true)],
        ["unknown field in signedPreKey", 400, "invalid_request", (b) => void (b.signedPreKey.expires = 1)],
        ["pqLastResortPreKey missing", 400, "invalid_request", (b) => void delete b.pqLastResortPreKey],
        [
          "identityKey of 32 bytes",
          400,
          "invalid_request",
          (b) => void (b.identityKey = b64(Buffer.from(b.identityKey, "base64").subarray(1))),
        ],
        ["identityKey not base64", 400, "invalid_request", (b) => void (b.identityKey = "!".repeat(44))],
        [
          "an EC key as pqLastResortPreKey",
          400,
          "invalid_request",
          (b) => void (b.pqLastResortPreKey = { ...b.signedPreKey }),
        ],
        [
          "identityKey with type byte 0x06",
          400,
          "invalid_key",
          (b) => {
            const key = Buffer.from(b.identityKey, "base64");
            key[0] = 0x06;
            b.identityKey = key.toString("base64");
          },
        ],
        [
          "signedPreKey signed by another key",
          422,
          "invalid_signature",
          (b) => {
            const pub = Buffer.from(b.signedPreKey.publicKey, "base64");
            b.signedPreKey.signature = b64(stranger.sign(new Uint8Array(pub)));
          },
        ],
        [
          "signedPreKey signature with a flipped byte",
          422,
          "invalid_signature",
          (b) => void (b.signedPreKey.signature = flip(b.signedPreKey.signature, 7)),
        ],
        [
          "pqLastResortPreKey signed by another key",
          422,
          "invalid_signature",
          (b) => {
            const pub = Buffer.from(b.pqLastResortPreKey.publicKey, "base64");
            b.pqLastResortPreKey.signature = b64(stranger.sign(new Uint8Array(pub)));
          },
        ],
        [
          "keys signed by the identity key of another registration",
          422,
          "invalid_signature",
          (b) => {
            const other = new SignalDevice().registration("someone_else");
            b.signedPreKey = other.signedPreKey;
          },
        ],
      ];
      let expected = await accountCount();
      for (const [name, status, code, spoil] of cases) {
        const device = new SignalDevice();
        const username = `refused_${cases.findIndex((c) => c[0] === name)}`;
        const body: Json = device.registration(username);
        spoil(body, device);
        const res = await server.http().post("/v1/accounts").send(body);
        assertRefused(res, status, code, name);
        assert.equal(await accountCount(), expected, `${name} created an account`);
        if (typeof body.username === "string" && /^[a-z0-9_.]{3,32}$/.test(body.username)) {
          assert.equal(await lookup(body.username), 404, `${name}: username taken after refusal`);
          // The refused username is still free for a valid registration.
          const fresh = new SignalDevice();
          const ok = await server.http().post("/v1/accounts").send(fresh.registration(body.username));
          assert.equal(ok.status, 201, `${name}: ${JSON.stringify(ok.body)}`);
          expected += 1;
        }
      }
    });

    it("accepts the boundaries: 3- and 32-character usernames, registration ids 1 and 16380", async () => {
      for (const [username, registrationId] of [
        ["a_b", 1],
        ["z".repeat(31) + ".", 16380],
      ] as const) {
        const device = new SignalDevice();
        const res = await server
          .http()
          .post("/v1/accounts")
          .send({ ...device.registration(username), registrationId });
        assert.equal(res.status, 201, `${username}: ${JSON.stringify(res.body)}`);
      }
    });

    it("a taken username is 409 username_taken and the account is untouched", async () => {
      const before = await accountCount();
      const intruder = new SignalDevice();
      const res = await server.http().post("/v1/accounts").send(intruder.registration(bobName));
      assertRefused(res, 409, "username_taken", "taken");
      assert.equal(await accountCount(), before);
      const found = await server.http().get(`/v1/accounts/username/${bobName}`).set("Authorization", alice.authHeader);
      assert.deepEqual(found.body, { uuid: bob.uuid });
      const whoami = await server.http().get("/v1/accounts/whoami").set("Authorization", bob.authHeader);
      assert.deepEqual(whoami.body, { uuid: bob.uuid, deviceId: 1, username: bobName });
      const intruderLogin = await server
        .http()
        .get("/v1/accounts/whoami")
        .set("Authorization", basic(`${bob.uuid}.1`, intruder.password));
      assertRefused(intruderLogin, 401, "unauthorized", "intruder's password");
      const bundle = await server.http().get(`/v1/keys/${bob.uuid}/1`).set("Authorization", alice.authHeader);
      assert.equal(bundle.body.identityKey, b64(bob.identity.getPublicKey().serialize()));
    });

    it("concurrent registrations of one username: exactly one 201, the rest 409 username_taken", async () => {
      const before = await accountCount();
      const results = await Promise.all(
        Array.from({ length: 8 }, () =>
          server.http().post("/v1/accounts").send(new SignalDevice().registration("race_name")),
        ),
      );
      assert.deepEqual(results.map((r) => r.status).sort(), [201, 409, 409, 409, 409, 409, 409, 409]);
      for (const r of results.filter((r) => r.status === 409)) assert.equal(r.body.code, "username_taken");
      assert.equal(await accountCount(), before + 1);
    });
  });

  describe("HTTP Basic authentication", () => {
    it("wrong password, unknown account and unknown device get the same 401 body", async () => {
      const wrongPassword = await server
        .http()
        .get("/v1/accounts/whoami")
        .set("Authorization", basic(`${alice.uuid}.1`, "A".repeat(24)));
      assertRefused(wrongPassword, 401, "unauthorized", "wrong password");
      const others: [string, string][] = [
        ["unknown account", basic(`${randomUUID()}.1`, alice.password)],
        ["unknown device", basic(`${alice.uuid}.9`, alice.password)],
        ["device 0", basic(`${alice.uuid}.0`, alice.password)],
        ["device 1e3", basic(`${alice.uuid}.1e3`, alice.password)],
        ["no device id", basic(alice.uuid, alice.password)],
        ["upper-case uuid", basic(`${alice.uuid.toUpperCase()}.1`, alice.password)],
        ["empty password", basic(`${alice.uuid}.1`, "")],
        ["another device's password", basic(`${alice.uuid}.2`, alice.password)],
      ];
      for (const [name, header] of others) {
        const res = await server.http().get("/v1/accounts/whoami").set("Authorization", header);
        assertRefused(res, 401, "unauthorized", name);
        assert.deepEqual(res.body, wrongPassword.body, name);
      }
    });

    it("malformed Authorization headers get the same 401 body as a wrong password", async () => {
      const wrongPassword = await server
        .http()
        .get("/v1/accounts/whoami")
        .set("Authorization", basic(`${alice.uuid}.1`, "A".repeat(24)));
      const headers: [string, string][] = [
        ["not base64", "Basic !!!not-base64!!!"],
        ["no colon", `Basic ${Buffer.from(`${alice.uuid}.1`).toString("base64")}`],
        ["bearer scheme", `Bearer ${alice.password}`],
        ["scheme only", "Basic"],
        ["over 1 KiB", basic(`${alice.uuid}.1`, "A".repeat(2000))],
      ];
      const actual: Json[] = [];
      for (const [name, header] of headers) {
        const res = await server.http().get("/v1/accounts/whoami").set("Authorization", header);
        actual.push({ name, status: res.status, body: res.body });
      }
      const missing = await server.http().get("/v1/accounts/whoami");
      actual.push({ name: "no Authorization header", status: missing.status, body: missing.body });
      assert.deepEqual(
        actual,
        [...headers.map(([name]) => name), "no Authorization header"].map((name) => ({
          name,
          status: 401,
          body: wrongPassword.body,
        })),
      );
    });

    it("every authenticated route refuses a wrong password with 401 before looking at the body", async () => {
      const wrong = basic(`${alice.uuid}.1`, "A".repeat(24));
      for (const [name, route] of Object.entries(routes) as [string, RouteSpec][]) {
        if (route.auth !== "device") continue;
        const path = route.path.replace(":uuid", bob.uuid).replace(":deviceId", "1").replace(":username", bobName);
        const res = await server.http()[route.method](path).set("Authorization", wrong).send({ not: "valid" });
        assertRefused(res, 401, "unauthorized", name);
      }
    });
  });

  describe("the socket", () => {
    it("refuses connections without credentials or with wrong ones with connect_error code unauthorized", async () => {
      const cases: [string, unknown][] = [
        ["no auth", undefined],
        ["empty auth", {}],
        ["username a number", { username: 1, password: alice.password }],
        ["password missing", { username: `${alice.uuid}.1` }],
        ["no device id", { username: alice.uuid, password: alice.password }],
        ["device 0", { username: `${alice.uuid}.0`, password: alice.password }],
        ["very long", { username: `${alice.uuid}.1`, password: "A".repeat(5000) }],
        ["bob's password for alice", { username: `${alice.uuid}.1`, password: bob.password }],
      ];
      const wrongPassword = await connectError(server.url, { username: `${alice.uuid}.1`, password: "A".repeat(24) });
      assert.equal((wrongPassword as { code?: string }).code, "unauthorized");
      // Unknown account, unknown device and wrong password must be indistinguishable.
      const unknownAccount = await connectError(server.url, {
        username: `${randomUUID()}.1`,
        password: alice.password,
      });
      const unknownDevice = await connectError(server.url, { username: `${alice.uuid}.9`, password: alice.password });
      assert.deepEqual(unknownAccount, wrongPassword);
      assert.deepEqual(unknownDevice, wrongPassword);
      // Missing or malformed credentials: the same refusal too.
      const actual: Json[] = [];
      for (const [name, auth] of cases) actual.push({ name, data: await connectError(server.url, auth) });
      assert.deepEqual(
        actual,
        cases.map(([name]) => ({ name, data: wrongPassword })),
      );
    });

    for (const [group, description] of Object.entries(sendGroups) as [SendGroup, string][]) {
      it(`send event, ${description}: {ok:false, status, error:{code}} with the REST route's status and code; nothing queued`, async () => {
        const connected = await server.connect(alice);
        await connected.queueEmpty;
        const socket = connected.socket as unknown as Socket;
        const actual: Json[] = [];
        const expected: Json[] = [];
        for (const c of badSends(group)) {
          const body = typeof c.body === "string" ? JSON.parse(c.body) : c.body;
          const request = Array.isArray(body) ? body : { destination: bob.uuid, ...body };
          const result = await emitRaw(socket, "send", request);
          const { missingDevices, extraDevices, staleDevices } = (result?.error ?? {}) as Json;
          actual.push({
            ok: result?.ok,
            ...outcome(c.name, result?.status, result?.error?.code, { missingDevices, extraDevices, staleDevices }),
          });
          expected.push({ ok: false, ...outcome(c.name, c.status, c.code, c.details ?? {}) });
        }
        assert.deepEqual(actual, expected);
        connected.close();
        assert.deepEqual(await queue(server, bob), []);
      });
    }

    it("send event: bad or unknown destinations are refused; the template is accepted", async () => {
      const connected = await server.connect(alice);
      await connected.queueEmpty;
      const socket = connected.socket as unknown as Socket;
      const destinations: [string, unknown, number, string][] = [
        ["destination missing", undefined, 400, "invalid_request"],
        ["destination not a uuid", "bob", 400, "invalid_request"],
        ["destination upper-case", bob.uuid.toUpperCase(), 400, "invalid_request"],
        ["destination a number", 42, 400, "invalid_request"],
        ["destination unknown", randomUUID(), 404, "not_found"],
      ];
      for (const [name, destination, status, code] of destinations) {
        const result = await emitRaw(socket, "send", { destination, messages: [message()] });
        assert.deepEqual(
          [result?.ok, result?.status, result?.error?.code],
          [false, status, code],
          `${name}: ${JSON.stringify(result)}`,
        );
      }
      assert.deepEqual(await queue(server, bob), []);
      const ok = await emitRaw(socket, "send", { destination: bob.uuid, messages: [message()] });
      assert.equal(ok.ok, true, JSON.stringify(ok));
      const [queued] = await queue(server, bob);
      assert.equal(queued?.id, ok.value.envelopes[0].id);
      const acked = await server
        .http()
        .post("/v1/messages/ack")
        .set("Authorization", bob.authHeader)
        .send({ ids: [queued!.id] });
      assert.deepEqual(acked.body, { deleted: 1 });
      connected.close();
    });

    it("answers bad acks and someone else's envelope ids like the REST route, and deletes nothing", async () => {
      const sent = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: [message()] });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      const bobs = (await queue(server, bob)).map((e) => e.id);
      assert.equal(bobs.length, 1);

      const connected = await server.connect(carol);
      await connected.queueEmpty;
      const socket = connected.socket as unknown as Socket;
      const bad: [string, unknown, number, string][] = [
        ["ids missing", {}, 400, "invalid_request"],
        ["ids empty", { ids: [] }, 400, "invalid_request"],
        ["ids not uuids", { ids: ["x"] }, 400, "invalid_request"],
        ["1001 ids", { ids: Array.from({ length: 1001 }, () => randomUUID()) }, 400, "invalid_request"],
        ["unknown field", { ids: bobs, force: true }, 400, "invalid_request"],
        ["a number", 7, 400, "invalid_request"],
        ["a string", bobs[0], 400, "invalid_request"],
        ["null", null, 400, "invalid_request"],
      ];
      for (const [name, payload, status, code] of bad) {
        const result = await emitRaw(socket, "ack", payload);
        assert.deepEqual(
          [result?.ok, result?.status, result?.error?.code],
          [false, status, code],
          `${name}: ${JSON.stringify(result)}`,
        );
      }
      // Another device's envelope ids are answered like deleted ones (no delivery oracle), and stay queued.
      for (const ids of [bobs, [randomUUID(), ...bobs], [randomUUID()]]) {
        const result = await emitRaw(socket, "ack", { ids });
        assert.deepEqual(result, { ok: true, value: { deleted: 0 } }, JSON.stringify(result));
      }
      assert.deepEqual(
        (await queue(server, bob)).map((e) => e.id),
        bobs,
      );
      const acked = await server
        .http()
        .post("/v1/messages/ack")
        .set("Authorization", bob.authHeader)
        .send({ ids: bobs });
      assert.deepEqual(acked.body, { deleted: 1 });
      connected.close();
    });

    it("an event whose callback comes without a payload, or after extra arguments, is answered with invalid_request", async () => {
      const connected = await server.connect(carol);
      await connected.queueEmpty;
      const socket = connected.socket as unknown as Socket;
      const cases: [string, string, unknown[]][] = [
        ["send with only a callback", "send", []],
        ["ack with only a callback", "ack", []],
        ["send with an extra argument", "send", [{ destination: bob.uuid, messages: [message()] }, "extra"]],
        ["ack with an extra argument", "ack", [{ ids: [randomUUID()] }, "extra"]],
      ];
      const answers = await Promise.all(
        cases.map(async ([name, event, args]) => {
          const result = await emitWithin(5000, socket, event, ...args).catch((error: Error) => ({
            noAnswer: error.message,
          }));
          return {
            name,
            answered: !(result && "noAnswer" in result),
            ok: result?.ok,
            status: result?.status,
            code: result?.error?.code,
          };
        }),
      );
      assert.deepEqual(
        answers,
        cases.map(([name]) => ({ name, answered: true, ok: false, status: 400, code: "invalid_request" })),
      );
      assert.deepEqual(await queue(server, bob), []);
      connected.close();
    });

    it("survives events without callbacks, garbage, huge arrays, malformed packets and oversize packets", async () => {
      const connected = await server.connect(carol);
      await connected.queueEmpty;
      const socket = connected.socket as unknown as Socket;
      const hugeArray = Array.from({ length: 150_000 }, (_, i) => i);
      const garbage: unknown[][] = [
        [],
        [42],
        ["send me"],
        [null],
        [[1, 2, 3]],
        [hugeArray],
        [{ destination: bob.uuid, messages: [message()] }], // valid, but no callback: nobody to answer, nothing to do
        [{ ids: hugeArray }],
        [Buffer.from("binary attachment")],
        [{ destination: bob.uuid, messages: hugeArray }],
        [JSON.parse(`{"__proto__":{"destination":"${bob.uuid}"}}`)],
      ];
      for (const event of [
        "send",
        "ack",
        "envelopes",
        "queue-empty",
        "closing",
        "nonexistent",
        "__proto__",
        "constructor",
        "hasOwnProperty",
      ]) {
        // Huge payloads on the two real events only: enough to show they are harmless, without a minute of parsing.
        for (const args of garbage)
          if (
            event === "send" ||
            event === "ack" ||
            !args.some(
              (a) =>
                a === hugeArray || (a as Json | null)?.ids === hugeArray || (a as Json | null)?.messages === hugeArray,
            )
          )
            socket.emit(event, ...args);
      }
      // With callbacks, garbage is answered.
      for (const payload of [
        42,
        "send me",
        null,
        [1, 2, 3],
        hugeArray,
        Buffer.from("binary"),
        { ids: hugeArray },
        { destination: bob.uuid, messages: hugeArray },
      ]) {
        for (const event of ["send", "ack"]) {
          const result = await emitRaw(socket, event, payload);
          assert.deepEqual(
            [result?.ok, result?.status, result?.error?.code],
            [false, 400, "invalid_request"],
            `${event}: ${JSON.stringify(result).slice(0, 200)}`,
          );
        }
      }
      // The connection still works after all that.
      const stillThere = await emitRaw(socket, "ack", { ids: [randomUUID()] });
      assert.deepEqual(stillThere, { ok: true, value: { deleted: 0 } });

      // A packet that is not Socket.IO: the server drops this connection only.
      const malformed = await server.connect(carol);
      await malformed.queueEmpty;
      const dropped = new Promise<string>((resolve) => malformed.socket.once("disconnect", resolve));
      (malformed.socket.io.engine as unknown as { write(data: string): void }).write('2["send",{"destination":');
      assert.ok(await dropped);

      // A packet over 2 MiB: the server drops this connection only.
      const oversize = await server.connect(carol);
      await oversize.queueEmpty;
      const closed = new Promise<string>((resolve) => oversize.socket.once("disconnect", resolve));
      (oversize.socket as unknown as Socket).emit(
        "send",
        { destination: bob.uuid, messages: [message({ content: "A".repeat(limits.maxBodyBytes + 16) })] },
        () => {},
      );
      assert.ok(await closed);

      // The server is still up and another device can send.
      const health = await server.http().get("/healthz");
      assert.deepEqual([health.status, health.body], [200, { status: "ok" }]);
      assert.deepEqual(await queue(server, bob), []);
      const sender = await server.connect(alice);
      await sender.queueEmpty;
      const sent = await emitRaw(sender.socket as unknown as Socket, "send", {
        destination: bob.uuid,
        messages: [message()],
      });
      assert.equal(sent.ok, true, JSON.stringify(sent));
      const queued = await queue(server, bob);
      assert.equal(queued.length, 1);
      const acked = await server
        .http()
        .post("/v1/messages/ack")
        .set("Authorization", bob.authHeader)
        .send({ ids: [queued[0]!.id] });
      assert.deepEqual(acked.body, { deleted: 1 });
      sender.close();
      connected.close();
    });
  });

  describe("key uploads", () => {
    it("wrong types, unknown fields and bad base64 are 400 invalid_request, and store nothing", async () => {
      const dave = await server.register();
      assert.equal(
        (await server.http().put("/v1/keys").set("Authorization", dave.authHeader).send(dave.keyUpload(2, 2))).status,
        204,
      );
      const ec = dave.ecPreKey();
      const signed = dave.signedPreKey();
      const bodies: [string, unknown][] = [
        ["body an array", [ec]],
        ["preKeys an object", { preKeys: ec }],
        ["preKeys a string", { preKeys: "keys" }],
        ["preKeys numbers", { preKeys: [1, 2] }],
        ["pqPreKeys null", { pqPreKeys: null }],
        ["signedPreKey an array", { signedPreKey: [signed] }],
        ["signedPreKey missing its signature", { signedPreKey: { keyId: signed.keyId, publicKey: signed.publicKey } }],
        ["unknown top-level field", { preKeys: [ec], deviceId: 2 }],
        ["unknown field in a pre-key", { preKeys: [{ ...ec, createdAt: 1 }] }],
        ["unknown field in signedPreKey", { signedPreKey: { ...signed, keyType: "ec" } }],
        ["publicKey not base64", { preKeys: [{ keyId: 1, publicKey: "%%%%" }] }],
        [
          "publicKey base64url",
          {
            preKeys: [
              {
                keyId: 1,
                publicKey: b64(new Uint8Array([5, ...new Array(32).fill(0xff)]))
                  .replace(/\//g, "_")
                  .replace(/\+/g, "-"),
              },
            ],
          },
        ],
        [
          "publicKey unpadded",
          { preKeys: [{ keyId: 1, publicKey: b64(new Uint8Array([5, ...new Array(31).fill(7)])).replace(/=+$/, "") }] },
        ],
        ["signature not base64", { signedPreKey: { ...signed, signature: "*".repeat(88) } }],
        ["keyId a string", { preKeys: [{ ...ec, keyId: String(ec.keyId) }] }],
        ["keyId negative", { preKeys: [{ ...ec, keyId: -1 }] }],
        ["keyId 2^31", { preKeys: [{ ...ec, keyId: 2 ** 31 }] }],
      ];
      for (const [name, body] of bodies) {
        const res = await server
          .http()
          .put("/v1/keys")
          .set("Authorization", dave.authHeader)
          .send(body as object);
        assertRefused(res, 400, "invalid_request", name);
      }
      const count = await server.http().get("/v1/keys/count").set("Authorization", dave.authHeader);
      assert.deepEqual(count.body, { ecCount: 2, pqCount: 2 });
    });
  });
});
