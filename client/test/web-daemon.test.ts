/**
 * `zimchat-chat web`, the local web client's daemon, driven as its browser
 * page drives it (JSON over HTTP and a WebSocket, cookie auth) and as an
 * attacking page would (wrong token, Host, Origin), against a real
 * homeserver child process with real libsignal. The browser UI itself is
 * tested with Chromium elsewhere. The tests run in order and tell one story.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord } from "@signalapp/libsignal-client";
import Database from "better-sqlite3";
import WebSocket from "ws";
import { freePort, startHomeserver, type Homeserver } from "@zimchat/testing/spawn";
import {
  maxWebUploadBytes,
  SqliteDeviceStore,
  startWebDaemon,
  ZimClient,
  type WebConversation,
  type WebDaemon,
  type WebEvent,
  type WebFileResponse,
  type WebGroup,
  type WebLinkCode,
  type WebMe,
  type WebMessage,
  type WebSafetyNumber,
  type WebSendResponse,
} from "../src/index.js";
import { cli, ok, only, start } from "./support/chat-cli.js";

/** Every HTTP response body and WebSocket frame the daemons sent, for the key-material scan. */
const payloads: string[] = [];
/** Response bodies as bytes, by their text (a downloaded file). */
const bodies = new Map<string, Buffer>();

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

interface RequestOptions {
  body?: unknown;
  raw?: string;
  /** A binary body (a file upload), sent as application/octet-stream. */
  bytes?: Buffer;
  /** Headers to set or replace. */
  headers?: Record<string, string>;
  cookie?: string;
  host?: string;
  /** null: no Origin header. @default this daemon's origin on POST, none on GET */
  origin?: string | null;
}

/** One HTTP request to a daemon, as a browser (or an attacker) would send it. */
function call(port: number, method: string, path: string, options: RequestOptions = {}): Promise<Reply> {
  const body = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const headers: Record<string, string> = { Host: options.host ?? `127.0.0.1:${port}` };
  const origin = options.origin === undefined ? (method === "GET" ? null : `http://127.0.0.1:${port}`) : options.origin;
  if (origin !== null) headers.Origin = origin;
  if (options.cookie) headers.Cookie = options.cookie;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    headers["Content-Length"] = String(Buffer.byteLength(body));
  }
  if (options.bytes) {
    headers["Content-Type"] = "application/octet-stream";
    headers["Content-Length"] = String(options.bytes.length);
  }
  Object.assign(headers, options.headers);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString("utf8");
        payloads.push(text);
        bodies.set(text, raw);
        let json: unknown = undefined;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          // Not JSON (a static file).
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on("error", reject);
    req.end(options.bytes ?? body);
  });
}

/** The page's WebSocket: every frame it received, and a way to wait for one. */
class Events {
  readonly received: WebEvent[] = [];
  private waiters: { match: (e: WebEvent) => boolean; resolve: (e: WebEvent) => void }[] = [];

  constructor(readonly socket: WebSocket) {
    socket.on("message", (data: Buffer) => {
      const text = data.toString("utf8");
      payloads.push(text);
      const event = JSON.parse(text) as WebEvent;
      this.received.push(event);
      for (const w of this.waiters.filter((w) => w.match(event))) w.resolve(event);
      this.waiters = this.waiters.filter((w) => !w.match(event));
    });
  }

  /** The first event (already received, or coming) that matches. */
  waitFor<T extends WebEvent>(match: (e: WebEvent) => e is T, timeoutMs?: number): Promise<T>;
  waitFor(match: (e: WebEvent) => boolean, timeoutMs?: number): Promise<WebEvent>;
  waitFor(match: (e: WebEvent) => boolean, timeoutMs = 20_000): Promise<WebEvent> {
    const seen = this.received.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching event in ${timeoutMs} ms; got ${JSON.stringify(this.received)}`)),
        timeoutMs,
      );
      this.waiters.push({
        match,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  close(): void {
    this.socket.close();
  }
}

/** Opens `/api/events`; resolves with the socket, or rejects with the refusal's status and body. */
function openEvents(port: number, options: { cookie?: string; origin?: string; host?: string } = {}): Promise<Events> {
  const headers: Record<string, string> = {};
  if (options.cookie) headers.Cookie = options.cookie;
  if (options.host) headers.Host = options.host;
  const socket = new WebSocket(`ws://127.0.0.1:${port}/api/events`, {
    headers,
    origin: options.origin ?? `http://127.0.0.1:${port}`,
  });
  return new Promise((resolve, reject) => {
    const events = new Events(socket);
    socket.once("open", () => resolve(events));
    socket.once("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString("utf8");
        payloads.push(text);
        bodies.set(text, raw);
        reject(Object.assign(new Error(`refused: ${res.statusCode} ${text}`), { status: res.statusCode, body: text }));
      });
    });
    socket.once("error", (error) => reject(error));
  });
}

/** Trades the launch token for a session cookie, as the page does on load. */
async function login(daemon: WebDaemon): Promise<string> {
  const reply = await call(daemon.port, "POST", "/api/session", { body: { token: daemon.token } });
  assert.equal(reply.status, 204, reply.text);
  const setCookie = String(reply.headers["set-cookie"]);
  assert.match(setCookie, /^zimchat_web=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/$/);
  return setCookie.split(";")[0]!;
}

async function until<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("zimchat-chat web (the local web client's daemon)", () => {
  let server: Homeserver;
  const dir = mkdtempSync(join(tmpdir(), "zimchat-web-"));
  const profile = (name: string): string => join(dir, name);
  const daemons: WebDaemon[] = [];
  const sockets: Events[] = [];
  const quick = { sendRetry: { maxMs: 1000, attemptTimeoutMs: 2000 }, retryMs: { first: 200, max: 1000 } };
  const startDaemon = async (name: string): Promise<WebDaemon> => {
    const daemon = await startWebDaemon({ profile: profile(name), ...quick });
    daemons.push(daemon);
    return daemon;
  };
  const events = async (daemon: WebDaemon, cookie: string): Promise<Events> => {
    const e = await openEvents(daemon.port, { cookie });
    sockets.push(e);
    return e;
  };
  let alice: WebDaemon;
  let bob: WebDaemon;
  let aliceCookie = "";
  let bobCookie = "";
  let aliceEvents: Events;
  let bobEvents: Events;
  let aliceMe: Extract<WebMe, { registered: true }>;
  let bobMe: Extract<WebMe, { registered: true }>;

  before(async () => {
    // A fixed port, so the homeserver comes back on the same URL after a restart.
    server = await startHomeserver(["--port", String(await freePort())]);
  });
  after(async () => {
    for (const s of sockets) s.close();
    for (const d of daemons) await d.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses to listen anywhere but 127.0.0.1, with a message and a non-zero exit", async () => {
    for (const host of ["0.0.0.0", "192.168.1.5", "::"]) {
      const exit = await cli(["web", "--host", host, "--profile", profile("nobody")]);
      assert.notEqual(exit.code, 0, host);
      assert.match(exit.stderr, /listens on 127\.0\.0\.1 only/, exit.stderr);
      assert.equal(exit.stdout, "");
      await assert.rejects(startWebDaemon({ profile: profile("nobody"), host }), /127\.0\.0\.1 only/);
    }
    const help = await cli(["web", "--help"]);
    assert.equal(help.code, 0);
    for (const option of ["--host <address>", "--port <port>", "--open", "--profile <dir>", "--json"])
      assert.ok(help.stdout.includes(option), option);
  });

  it("the CLI prints a 127.0.0.1 link with a launch token, serves the page, and stops on SIGTERM", async () => {
    const web = start(["web", "--profile", profile("carol"), "--json"]);
    const out = await web.seen('"type":"webReady"');
    const ready = JSON.parse(out.split("\n")[0]!) as { url: string; port: number; registered: boolean };
    assert.match(ready.url, /^http:\/\/127\.0\.0\.1:\d+\/#token=[A-Za-z0-9_-]{43}$/);
    assert.equal(ready.registered, false);
    const page = await call(ready.port, "GET", "/");
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-type"]), /^text\/html/);
    assert.doesNotMatch(page.text, /<script(?![^>]*\bsrc=)[^>]*>/, "no inline script");
    const token = ready.url.split("#token=")[1]!;
    const session = await call(ready.port, "POST", "/api/session", { body: { token } });
    assert.equal(session.status, 204);
    web.child.kill("SIGTERM");
    const exit = await web.exited;
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stdout, /"type":"webStopped"/);
  });

  it("registers two devices through the API and tells whether they are online", async () => {
    alice = await startDaemon("alice");
    bob = await startDaemon("bob");
    aliceCookie = await login(alice);
    bobCookie = await login(bob);
    assert.deepEqual((await call(alice.port, "GET", "/api/me", { cookie: aliceCookie })).json, { registered: false });
    const registered = await call(alice.port, "POST", "/api/register", {
      cookie: aliceCookie,
      body: { server: server.url, username: "alice" },
    });
    assert.equal(registered.status, 200, registered.text);
    aliceMe = registered.json as typeof aliceMe;
    assert.equal(aliceMe.registered, true);
    assert.equal(aliceMe.username, "alice");
    assert.equal(aliceMe.deviceId, 1);
    assert.equal(aliceMe.server, server.url);
    const again = await call(alice.port, "POST", "/api/register", {
      cookie: aliceCookie,
      body: { server: server.url, username: "alice2" },
    });
    assert.equal(again.status, 409);
    assert.equal((again.json as { error: string }).error, "already_registered");
    const taken = await call(bob.port, "POST", "/api/register", {
      cookie: bobCookie,
      body: { server: server.url, username: "alice" },
    });
    assert.equal(taken.status, 409, taken.text);
    assert.equal((taken.json as { error: string }).error, "username_taken");
    const bad = await call(bob.port, "POST", "/api/register", { cookie: bobCookie, body: { server: server.url } });
    assert.equal(bad.status, 400);
    const bobReply = await call(bob.port, "POST", "/api/register", {
      cookie: bobCookie,
      body: { server: server.url, username: "bob" },
    });
    assert.equal(bobReply.status, 200, bobReply.text);
    bobMe = bobReply.json as typeof bobMe;
    aliceEvents = await events(alice, aliceCookie);
    bobEvents = await events(bob, bobCookie);
    await aliceEvents.waitFor((e) => e.type === "connection" && e.online);
    await until(
      async () => ((await call(bob.port, "GET", "/api/me", { cookie: bobCookie })).json as { online?: boolean }).online,
      "bob online",
    );
  });

  it("refuses a wrong token, a missing cookie, a foreign Host or Origin: 403 with the reason", async () => {
    const port = alice.port;
    const wrong = await call(port, "POST", "/api/session", { body: { token: "A".repeat(43) } });
    assert.equal(wrong.status, 403);
    assert.deepEqual(wrong.json, { error: "forbidden", reason: "token" });
    assert.deepEqual((await call(port, "POST", "/api/session", { body: { token: bob.token } })).json, {
      error: "forbidden",
      reason: "token",
    });
    for (const [method, path] of [
      ["GET", "/api/me"],
      ["GET", "/api/conversations"],
      ["POST", "/api/send"],
    ] as const) {
      const none = await call(port, method, path, { body: method === "POST" ? { to: "bob", text: "x" } : undefined });
      assert.equal(none.status, 403, path);
      assert.deepEqual(none.json, { error: "forbidden", reason: "cookie" });
      const forged = await call(port, method, path, { cookie: "zimchat_web=forged", body: undefined });
      assert.deepEqual(forged.json, { error: "forbidden", reason: "cookie" });
    }
    // Bob's session cookie is not Alice's.
    assert.deepEqual((await call(port, "GET", "/api/me", { cookie: bobCookie })).json, {
      error: "forbidden",
      reason: "cookie",
    });
    // DNS rebinding: evil.example resolving to 127.0.0.1 sends its own name as Host.
    for (const host of [
      `evil.example:${port}`,
      `127.0.0.1:${port + 1}`,
      "127.0.0.1",
      `localhost.evil.example:${port}`,
    ]) {
      const rebound = await call(port, "GET", "/api/me", { cookie: aliceCookie, host });
      assert.equal(rebound.status, 403, host);
      assert.deepEqual(rebound.json, { error: "forbidden", reason: "host" });
      assert.deepEqual((await call(port, "GET", "/", { host })).json, { error: "forbidden", reason: "host" });
      assert.deepEqual((await call(port, "POST", "/api/session", { host, body: { token: alice.token } })).json, {
        error: "forbidden",
        reason: "host",
      });
    }
    assert.equal((await call(port, "GET", "/api/me", { cookie: aliceCookie, host: `localhost:${port}` })).status, 200);
    // Cross-origin POSTs (a form or fetch on another site), and a POST with no Origin at all.
    for (const origin of [
      "http://evil.example",
      `http://127.0.0.1:${port + 1}`,
      "null",
      `https://127.0.0.1:${port}`,
      null,
    ]) {
      const post = await call(port, "POST", "/api/send", {
        cookie: aliceCookie,
        origin,
        body: { to: "bob", text: "pwned" },
      });
      assert.equal(post.status, 403, String(origin));
      assert.deepEqual(post.json, { error: "forbidden", reason: "origin" });
      const session = await call(port, "POST", "/api/session", { origin, body: { token: alice.token } });
      assert.deepEqual(session.json, { error: "forbidden", reason: "origin" });
    }
    const read = await call(port, "POST", `/api/conversations/${bobMe.uuid}/read`, {
      cookie: aliceCookie,
      origin: "http://evil.example",
    });
    assert.deepEqual(read.json, { error: "forbidden", reason: "origin" });
    // The WebSocket: a foreign Origin, no cookie, a foreign Host.
    const refusal = async (options: Parameters<typeof openEvents>[1]): Promise<{ status: number; body: string }> => {
      try {
        const open = await openEvents(port, options);
        open.close();
      } catch (error) {
        return error as { status: number; body: string };
      }
      throw new Error(`the upgrade was accepted: ${JSON.stringify(options)}`);
    };
    const foreign = await refusal({ cookie: aliceCookie, origin: "http://evil.example" });
    assert.equal(foreign.status, 403);
    assert.deepEqual(JSON.parse(foreign.body), { error: "forbidden", reason: "origin" });
    const cookieless = await refusal({});
    assert.deepEqual(JSON.parse(cookieless.body), { error: "forbidden", reason: "cookie" });
    const rebound = await refusal({ cookie: aliceCookie, host: `evil.example:${port}` });
    assert.deepEqual(JSON.parse(rebound.body), { error: "forbidden", reason: "host" });
    // Nothing was sent.
    assert.deepEqual((await call(port, "GET", "/api/conversations", { cookie: aliceCookie })).json, []);
  });

  it("sends security headers, never CORS, and caps request bodies", async () => {
    const port = alice.port;
    const replies = [
      await call(port, "GET", "/"),
      await call(port, "GET", "/api/me", { cookie: aliceCookie }),
      await call(port, "GET", "/api/me", { origin: "http://evil.example", cookie: aliceCookie }),
      await call(port, "POST", "/api/session", { body: { token: "wrong" } }),
      await call(port, "GET", "/nothing-here.js"),
    ];
    for (const reply of replies) {
      const csp = String(reply.headers["content-security-policy"]);
      assert.match(csp, /(^|; )default-src 'self'(;|$)/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.match(csp, /base-uri 'none'/);
      assert.match(csp, /form-action 'self'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(reply.headers["x-content-type-options"], "nosniff");
      assert.equal(reply.headers["referrer-policy"], "no-referrer");
      for (const name of Object.keys(reply.headers)) assert.doesNotMatch(name, /^access-control-/i);
    }
    assert.equal(replies[1]!.headers["cache-control"], "no-store");
    assert.equal(replies[2]!.status, 403, "a foreign Origin is refused on a GET too");
    assert.equal(replies[4]!.status, 404);
    const big = await call(port, "POST", "/api/send", {
      cookie: aliceCookie,
      raw: JSON.stringify({ to: "bob", text: "x".repeat(70_000) }),
    });
    assert.equal(big.status, 413);
    assert.equal((big.json as { error: string }).error, "body_too_large");
    const traversal = await call(port, "GET", "/..%2f..%2fpackage.json");
    assert.equal(traversal.status, 404);
  });

  it("alice sends to bob: bob's page gets the message, conversations count unread until read", async () => {
    const sent = await call(alice.port, "POST", "/api/send", {
      cookie: aliceCookie,
      body: { to: "bob", text: "Mhoro Bob! Are we still on for the braai?" },
    });
    assert.equal(sent.status, 200, sent.text);
    const reply = sent.json as WebSendResponse;
    assert.equal(reply.conversation, bobMe.uuid);
    assert.equal(reply.status, "sent");
    const arrived = await bobEvents.waitFor(
      (e): e is Extract<WebEvent, { type: "message" }> => e.type === "message" && e.message.text.startsWith("Mhoro"),
    );
    assert.equal(arrived.conversation, aliceMe.uuid);
    assert.equal(arrived.message.author, aliceMe.uuid);
    assert.equal(arrived.message.outgoing, false);
    assert.equal(arrived.message.status, "received");
    await bobEvents.waitFor((e) => e.type === "conversations");
    // Alice's copy: the same id as the send's answer, then delivered once bob's device has it.
    const own = await aliceEvents.waitFor(
      (e): e is Extract<WebEvent, { type: "message" }> => e.type === "message" && e.message.id === reply.id,
    );
    assert.equal(own.message.outgoing, true);
    await aliceEvents.waitFor((e) => e.type === "status" && e.id === reply.id && e.status === "delivered");

    const bobList = (await call(bob.port, "GET", "/api/conversations", { cookie: bobCookie }))
      .json as WebConversation[];
    assert.equal(bobList.length, 1);
    assert.equal(bobList[0]!.id, aliceMe.uuid);
    assert.equal(bobList[0]!.kind, "direct");
    assert.equal(bobList[0]!.unread, 1);
    assert.equal(bobList[0]!.last?.outgoing, false);
    assert.equal(bobList[0]!.last?.text, "Mhoro Bob! Are we still on for the braai?");
    // Bob never looked alice up: a short account id until a name is verified (the claim in her message is checked).
    assert.ok(["alice", aliceMe.uuid.slice(0, 8)].includes(bobList[0]!.title), bobList[0]!.title);

    const answer = await call(bob.port, "POST", "/api/send", {
      cookie: bobCookie,
      body: { to: aliceMe.uuid, text: "Yebo, Saturday at 2" },
    });
    assert.equal((answer.json as WebSendResponse).status, "sent", answer.text);
    await aliceEvents.waitFor((e) => e.type === "message" && e.message.text === "Yebo, Saturday at 2");

    const read = await call(bob.port, "POST", `/api/conversations/${aliceMe.uuid}/read`, { cookie: bobCookie });
    assert.equal(read.status, 204);
    const after = (await call(bob.port, "GET", "/api/conversations", { cookie: bobCookie })).json as WebConversation[];
    assert.equal(after[0]!.unread, 0);
    assert.equal(after[0]!.last?.outgoing, true);

    const aliceList = (await call(alice.port, "GET", "/api/conversations", { cookie: aliceCookie }))
      .json as WebConversation[];
    assert.deepEqual(
      aliceList.map((c) => [c.id, c.kind, c.title, c.unread]),
      [[bobMe.uuid, "direct", "bob", 1]],
    );
    const messages = (
      await call(alice.port, "GET", `/api/conversations/${bobMe.uuid}/messages`, { cookie: aliceCookie })
    ).json as WebMessage[];
    assert.deepEqual(
      messages.map((m) => [m.text, m.outgoing, m.authorName, m.status]),
      [
        ["Mhoro Bob! Are we still on for the braai?", true, "alice", "delivered"],
        ["Yebo, Saturday at 2", false, "bob", "received"],
      ],
    );
    assert.equal(messages[0]!.id, reply.id);
    assert.ok(messages[0]!.at <= messages[1]!.at);
    const one = (
      await call(alice.port, "GET", `/api/conversations/${bobMe.uuid}/messages?limit=1`, { cookie: aliceCookie })
    ).json as WebMessage[];
    assert.deepEqual(
      one.map((m) => m.text),
      ["Yebo, Saturday at 2"],
    );
    for (const limit of ["0", "501", "abc"])
      assert.equal(
        (
          await call(alice.port, "GET", `/api/conversations/${bobMe.uuid}/messages?limit=${limit}`, {
            cookie: aliceCookie,
          })
        ).status,
        400,
      );
    const nobody = await call(alice.port, "POST", "/api/send", {
      cookie: aliceCookie,
      body: { to: "nobody", text: "hi" },
    });
    assert.equal(nobody.status, 404, nobody.text);
    assert.equal((nobody.json as { error: string }).error, "unknown_user");
  });

  it("bob offline (his daemon stopped): his messages wait on the homeserver and arrive when he is back", async () => {
    bobEvents.close();
    await bob.close();
    for (const text of ["Bring the boerewors", "And the chakalaka"]) {
      const sent = await call(alice.port, "POST", "/api/send", { cookie: aliceCookie, body: { to: "bob", text } });
      assert.equal((sent.json as WebSendResponse).status, "sent", sent.text);
    }
    bob = await startDaemon("bob");
    bobCookie = await login(bob);
    bobEvents = await events(bob, bobCookie);
    const messages = await until(async () => {
      const list = (await call(bob.port, "GET", `/api/conversations/${aliceMe.uuid}/messages`, { cookie: bobCookie }))
        .json as WebMessage[];
      return list.length === 4 && list;
    }, "bob's messages");
    assert.deepEqual(
      messages.slice(2).map((m) => [m.text, m.status]),
      [
        ["Bring the boerewors", "received"],
        ["And the chakalaka", "received"],
      ],
    );
    const list = (await call(bob.port, "GET", "/api/conversations", { cookie: bobCookie })).json as WebConversation[];
    assert.equal(list[0]!.unread, 2, "read state kept across daemon runs");
  });

  it("offline-first: a message typed while the homeserver is down is queued, then sent when it is back", async () => {
    let queued: WebSendResponse | undefined;
    await server.restart(async () => {
      await aliceEvents.waitFor((e) => e.type === "connection" && !e.online);
      const sent = await call(alice.port, "POST", "/api/send", {
        cookie: aliceCookie,
        body: { to: "bob", text: "Is the server down again?" },
      });
      assert.equal(sent.status, 200, sent.text);
      queued = sent.json as WebSendResponse;
      assert.equal(queued.status, "queued");
      assert.equal(queued.conversation, bobMe.uuid);
      const waiting = (
        await call(alice.port, "GET", `/api/conversations/${bobMe.uuid}/messages`, { cookie: aliceCookie })
      ).json as WebMessage[];
      assert.deepEqual(
        [waiting.at(-1)?.id, waiting.at(-1)?.text, waiting.at(-1)?.status],
        [queued.id, "Is the server down again?", "queued"],
      );
      const me = (await call(alice.port, "GET", "/api/me", { cookie: aliceCookie })).json as { online: boolean };
      assert.equal(me.online, false);
    });
    await aliceEvents.waitFor((e) => e.type === "status" && e.id === queued!.id && e.status === "sent", 30_000);
    await bobEvents.waitFor((e) => e.type === "message" && e.message.text === "Is the server down again?", 30_000);
    await until(
      async () =>
        ((await call(alice.port, "GET", "/api/me", { cookie: aliceCookie })).json as { online?: boolean }).online,
      "alice back online",
    );
    const after = (await call(alice.port, "GET", `/api/conversations/${bobMe.uuid}/messages`, { cookie: aliceCookie }))
      .json as WebMessage[];
    assert.equal(after.filter((m) => m.text === "Is the server down again?").length, 1);
    const bobSide = (await call(bob.port, "GET", `/api/conversations/${aliceMe.uuid}/messages`, { cookie: bobCookie }))
      .json as WebMessage[];
    assert.equal(bobSide.filter((m) => m.text === "Is the server down again?").length, 1, "received once");
    assert.notEqual(after.at(-1)?.status, "queued");
  });

  it("groups and safety numbers", async () => {
    const created = await call(alice.port, "POST", "/api/groups", {
      cookie: aliceCookie,
      body: { title: "Braai crew", members: ["bob"] },
    });
    assert.equal(created.status, 200, created.text);
    const group = created.json as { conversation: string; title: string; members: string[] };
    assert.match(group.conversation, /^group:/);
    assert.deepEqual([...group.members].sort(), ["alice", "bob"]);
    const sent = await call(alice.port, "POST", "/api/send", {
      cookie: aliceCookie,
      body: { to: group.conversation, text: "Welcome to the crew" },
    });
    assert.equal((sent.json as WebSendResponse).status, "sent", sent.text);
    const arrived = await bobEvents.waitFor((e) => e.type === "message" && e.message.text === "Welcome to the crew");
    assert.equal((arrived as { conversation: string }).conversation, group.conversation);
    const bobList = (await call(bob.port, "GET", "/api/conversations", { cookie: bobCookie }))
      .json as WebConversation[];
    assert.deepEqual(
      bobList.map((c) => [c.kind, c.title]),
      [
        ["group", "Braai crew"],
        ["direct", bobList[1]!.title],
      ],
    );

    const safety = await call(alice.port, "GET", "/api/safety/bob", { cookie: aliceCookie });
    assert.equal(safety.status, 200, safety.text);
    const number = safety.json as WebSafetyNumber;
    assert.match(number.digits, /^\d{5}( \d{5}){11}$/);
    assert.match(number.qrSvg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.equal(number.verified, false);
    const theirs = (await call(bob.port, "GET", `/api/safety/${aliceMe.uuid}`, { cookie: bobCookie }))
      .json as WebSafetyNumber;
    assert.equal(theirs.digits, number.digits, "both sides show the same number");
    const wrong = await call(alice.port, "POST", "/api/safety/bob/verify", {
      cookie: aliceCookie,
      body: { number: "1".repeat(60) },
    });
    assert.equal(wrong.status, 422, wrong.text);
    const verified = await call(alice.port, "POST", "/api/safety/bob/verify", {
      cookie: aliceCookie,
      body: { number: theirs.digits },
    });
    assert.equal(verified.status, 200, verified.text);
    assert.equal((verified.json as WebSafetyNumber).verified, true);
  });

  it("group management: members with admin marks, adding and removing (admins only), leaving", async () => {
    const carol = await startDaemon("carol-web");
    const carolCookie = await login(carol);
    const carolReply = await call(carol.port, "POST", "/api/register", {
      cookie: carolCookie,
      body: { server: server.url, username: "carol" },
    });
    assert.equal(carolReply.status, 200, carolReply.text);
    const carolEvents = await events(carol, carolCookie);
    const created = await call(alice.port, "POST", "/api/groups", {
      cookie: aliceCookie,
      body: { title: "Committee", members: ["bob"] },
    });
    const id = (created.json as { conversation: string }).conversation;
    const path = `/api/groups/${encodeURIComponent(id)}`;
    const get = async (daemon: WebDaemon, cookie: string): Promise<WebGroup> => {
      const reply = await call(daemon.port, "GET", path, { cookie });
      assert.equal(reply.status, 200, reply.text);
      return reply.json as WebGroup;
    };
    const members = (g: WebGroup): string[] => g.members.map((m) => `${m.name}${m.admin ? " (admin)" : ""}`);

    const seen = await get(alice, aliceCookie);
    assert.equal(seen.id, id);
    assert.equal(seen.title, "Committee");
    assert.deepEqual(members(seen), ["alice (admin)", "bob"]);
    assert.deepEqual(
      seen.members.map((m) => m.you ?? false),
      [true, false],
    );
    assert.equal(seen.admin, true);
    assert.equal(seen.member, true);
    // The bare group id names it too; an unknown one is a 404.
    assert.equal((await call(alice.port, "GET", `/api/groups/${id.slice(6)}`, { cookie: aliceCookie })).status, 200);
    const unknown = await call(alice.port, "GET", `/api/groups/group:${aliceMe.uuid}`, { cookie: aliceCookie });
    assert.equal(unknown.status, 404);
    assert.equal((unknown.json as { error: string }).error, "unknown_group");

    // bob is a member, not an admin: he sees the group, and is refused a change with a code that is not the guards'.
    await until(async () => (await call(bob.port, "GET", path, { cookie: bobCookie })).status === 200, "bob's group");
    const bobView = await get(bob, bobCookie);
    assert.deepEqual([bobView.admin, bobView.member], [false, true]);
    const refused = await call(bob.port, "POST", `${path}/members`, { cookie: bobCookie, body: { add: ["carol"] } });
    assert.equal(refused.status, 409, refused.text);
    assert.equal((refused.json as { error: string }).error, "not_group_admin");
    assert.match((refused.json as { message: string }).message, /only an admin of Committee .*admins: alice/);
    const empty = await call(alice.port, "POST", `${path}/members`, { cookie: aliceCookie, body: {} });
    assert.equal(empty.status, 400);
    const self = await call(alice.port, "POST", `${path}/members`, {
      cookie: aliceCookie,
      body: { remove: [aliceMe.uuid] },
    });
    assert.equal(self.status, 400, self.text);

    // alice adds carol; all three chat.
    const added = await call(alice.port, "POST", `${path}/members`, { cookie: aliceCookie, body: { add: ["carol"] } });
    assert.equal(added.status, 200, added.text);
    assert.deepEqual(members(added.json as WebGroup), ["alice (admin)", "bob", "carol"]);
    await aliceEvents.waitFor((e) => e.type === "group" && e.conversation === id);
    await carolEvents.waitFor((e) => e.type === "group" && e.conversation === id);
    await bobEvents.waitFor((e) => e.type === "group" && e.conversation === id);
    assert.deepEqual(members(await get(carol, carolCookie)), ["alice (admin)", "bob", "carol"]);
    await call(carol.port, "POST", "/api/send", { cookie: carolCookie, body: { to: id, text: "Hi all, carol here" } });
    await aliceEvents.waitFor((e) => e.type === "message" && e.message.text === "Hi all, carol here");
    await bobEvents.waitFor((e) => e.type === "message" && e.message.text === "Hi all, carol here");

    // alice removes carol: bob gets what follows, carol does not.
    const carolUuid = (await get(alice, aliceCookie)).members.find((m) => m.name === "carol")!.uuid;
    const removed = await call(alice.port, "POST", `${path}/members`, {
      cookie: aliceCookie,
      body: { remove: [carolUuid] },
    });
    assert.equal(removed.status, 200, removed.text);
    assert.deepEqual(members(removed.json as WebGroup), ["alice (admin)", "bob"]);
    await until(async () => !(await get(carol, carolCookie)).member, "carol told she was removed");
    await call(alice.port, "POST", "/api/send", {
      cookie: aliceCookie,
      body: { to: id, text: "Minutes, without carol" },
    });
    await bobEvents.waitFor((e) => e.type === "message" && e.message.text === "Minutes, without carol");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(
      carolEvents.received.filter((e) => e.type === "message" && e.message.text === "Minutes, without carol").length,
      0,
    );
    const carolSend = await call(carol.port, "POST", "/api/send", {
      cookie: carolCookie,
      body: { to: id, text: "Still here?" },
    });
    assert.equal(carolSend.status, 409, carolSend.text);

    // bob leaves: alice sees him go, and he gets nothing more; the only admin cannot leave.
    const left = await call(bob.port, "POST", `${path}/leave`, { cookie: bobCookie });
    assert.equal(left.status, 200, left.text);
    assert.equal((left.json as WebGroup).member, false);
    await until(async () => (await get(alice, aliceCookie)).members.length === 1, "alice told bob left");
    const again = await call(bob.port, "POST", `${path}/leave`, { cookie: bobCookie });
    assert.equal((again.json as { error: string }).error, "not_group_member");
    const last = await call(alice.port, "POST", `${path}/leave`, { cookie: aliceCookie });
    assert.equal(last.status, 409, last.text);
    assert.equal((last.json as { error: string }).error, "last_group_admin");
    await call(alice.port, "POST", `${path}/members`, { cookie: aliceCookie, body: { add: ["carol"] } });
    await call(alice.port, "POST", "/api/send", { cookie: aliceCookie, body: { to: id, text: "Welcome back carol" } });
    await carolEvents.waitFor((e) => e.type === "message" && e.message.text === "Welcome back carol");
    assert.equal(
      bobEvents.received.filter((e) => e.type === "message" && e.message.text === "Welcome back carol").length,
      0,
    );
  });

  it("links a second device to alice's account: a code and QR, alice approves, it receives what bob sends", async () => {
    const second = await startDaemon("alice-laptop");
    const cookie = await login(second);
    const secondEvents = await events(second, cookie);
    const bad = await call(second.port, "POST", "/api/link", { cookie, body: { server: "ftp://example.org" } });
    assert.equal(bad.status, 400, bad.text);
    const started = await call(second.port, "POST", "/api/link", { cookie, body: { server: server.url } });
    assert.equal(started.status, 200, started.text);
    const code = started.json as WebLinkCode;
    assert.match(code.uri, /^zimchat-link:\?server=/);
    assert.match(code.qrSvg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.ok(code.expiresAt > Date.now());
    // A reload finds the code again; registering meanwhile is refused.
    assert.deepEqual((await call(second.port, "GET", "/api/me", { cookie })).json, {
      registered: false,
      linking: code,
    });
    const register = await call(second.port, "POST", "/api/register", {
      cookie,
      body: { server: server.url, username: "laptop" },
    });
    assert.equal(register.status, 409);

    const notUri = await call(alice.port, "POST", "/api/link/approve", {
      cookie: aliceCookie,
      body: { uri: "https://example.org" },
    });
    assert.equal(notUri.status, 400, notUri.text);
    const approved = await call(alice.port, "POST", "/api/link/approve", {
      cookie: aliceCookie,
      body: { uri: code.uri },
    });
    assert.equal(approved.status, 204, approved.text);
    const linked = await secondEvents.waitFor((e) => e.type === "linked", 30_000);
    assert.equal(linked.type === "linked" && linked.me.username, "alice");
    assert.equal(linked.type === "linked" && linked.me.deviceId, 2);
    const me = (await call(second.port, "GET", "/api/me", { cookie })).json as WebMe;
    assert.equal(me.registered && me.uuid, aliceMe.uuid);
    // Only the primary approves.
    const notPrimary = await call(second.port, "POST", "/api/link/approve", { cookie, body: { uri: code.uri } });
    assert.equal(notPrimary.status, 409);
    assert.equal((notPrimary.json as { error: string }).error, "not_primary");

    await secondEvents.waitFor((e) => e.type === "connection" && e.online);
    // bob's daemon learns of alice's new device when its send is answered with the device list (409) and retried.
    const sent = await call(bob.port, "POST", "/api/send", {
      cookie: bobCookie,
      body: { to: "alice", text: "Hello to both of your devices" },
    });
    assert.equal((sent.json as WebSendResponse).status, "sent", sent.text);
    const arrived = await secondEvents.waitFor(
      (e) => e.type === "message" && e.message.text === "Hello to both of your devices",
    );
    assert.equal(arrived.type === "message" && arrived.conversation, bobMe.uuid);
  });

  it("files: sent as raw bytes, streamed back decrypted, capped, behind the same checks; only name and size shown", async () => {
    const file = randomBytes(300_000);
    const name = "braai list (final) é.bin";
    const query = (to: string) => `/api/files?to=${encodeURIComponent(to)}&name=${encodeURIComponent(name)}`;
    const sent = await call(alice.port, "POST", query("bob"), { cookie: aliceCookie, bytes: file });
    assert.equal(sent.status, 200, sent.text);
    const reply = sent.json as WebFileResponse;
    assert.deepEqual(
      [reply.conversation, reply.status, reply.attachment],
      [bobMe.uuid, "sent", { name, size: file.length }],
    );
    const arrived = await bobEvents.waitFor(
      (e): e is Extract<WebEvent, { type: "message" }> => e.type === "message" && e.message.attachment?.name === name,
    );
    assert.deepEqual(arrived.message.attachment, { name, size: file.length });
    assert.equal(arrived.message.text, "");
    assert.deepEqual(Object.keys(arrived.message.attachment!).sort(), ["name", "size"], "no key, digest or id");
    const listed = (await call(bob.port, "GET", `/api/conversations/${aliceMe.uuid}/messages`, { cookie: bobCookie }))
      .json as WebMessage[];
    assert.deepEqual(listed.at(-1)?.attachment, { name, size: file.length });
    const list = (await call(bob.port, "GET", "/api/conversations", { cookie: bobCookie })).json as WebConversation[];
    assert.equal(list.find((c) => c.id === aliceMe.uuid)?.last?.text, `[file ${name}]`);

    const path = `/api/files/${aliceMe.uuid}/${encodeURIComponent(arrived.message.id)}`;
    const got = await call(bob.port, "GET", path, { cookie: bobCookie });
    assert.equal(got.status, 200, got.text.slice(0, 200));
    assert.ok(bodies.get(got.text)?.equals(file), "the same bytes");
    assert.equal(got.headers["content-type"], "application/octet-stream");
    assert.equal(got.headers["x-content-type-options"], "nosniff");
    assert.equal(got.headers["content-length"], String(file.length));
    assert.equal(
      got.headers["content-disposition"],
      `attachment; filename="braai list (final) _.bin"; filename*=UTF-8''${encodeURIComponent(name)}`,
    );
    // Alice gets her own copy back too.
    const own = await call(alice.port, "GET", `/api/files/${bobMe.uuid}/${encodeURIComponent(reply.id)}`, {
      cookie: aliceCookie,
    });
    assert.ok(bodies.get(own.text)?.equals(file), "the sender's copy");

    // A group.
    const group = (
      (await call(alice.port, "GET", "/api/conversations", { cookie: aliceCookie })).json as WebConversation[]
    ).find((c) => c.kind === "group" && c.title === "Braai crew")!;
    const small = Buffer.from("Bring 2 kg of boerewors\n");
    const toGroup = await call(alice.port, "POST", `/api/files?to=${encodeURIComponent(group.id)}&name=list.txt`, {
      cookie: aliceCookie,
      bytes: small,
    });
    assert.equal(toGroup.status, 200, toGroup.text);
    const inGroup = await bobEvents.waitFor(
      (e): e is Extract<WebEvent, { type: "message" }> =>
        e.type === "message" && e.conversation === group.id && e.message.attachment?.name === "list.txt",
    );
    const groupFile = await call(bob.port, "GET", `/api/files/${group.id}/${encodeURIComponent(inGroup.message.id)}`, {
      cookie: bobCookie,
    });
    assert.equal(groupFile.text, small.toString());

    // Refusals: too large (from Content-Length, before a byte is read), empty, unknown, and the daemon's guards.
    const huge = await call(alice.port, "POST", query("bob"), {
      cookie: aliceCookie,
      headers: { "Content-Length": String(maxWebUploadBytes + 1), "Content-Type": "application/octet-stream" },
    });
    assert.equal(huge.status, 413, huge.text);
    assert.equal((huge.json as { error: string }).error, "body_too_large");
    const empty = await call(alice.port, "POST", query("bob"), { cookie: aliceCookie, bytes: Buffer.alloc(0) });
    assert.equal(empty.status, 400, empty.text);
    const nobody = await call(alice.port, "POST", query("nobody"), { cookie: aliceCookie, bytes: small });
    assert.equal(nobody.status, 404, nobody.text);
    const missing = await call(bob.port, "GET", `/api/files/${aliceMe.uuid}/no-such-message`, { cookie: bobCookie });
    assert.equal(missing.status, 404);
    assert.equal((missing.json as { error: string }).error, "unknown_message");
    assert.deepEqual((await call(bob.port, "GET", path)).json, { error: "forbidden", reason: "cookie" });
    assert.deepEqual(
      (await call(bob.port, "GET", path, { cookie: bobCookie, host: `evil.example:${bob.port}` })).json,
      {
        error: "forbidden",
        reason: "host",
      },
    );
    assert.deepEqual((await call(bob.port, "GET", path, { cookie: bobCookie, origin: "http://evil.example" })).json, {
      error: "forbidden",
      reason: "origin",
    });
    const forged = await call(alice.port, "POST", query("bob"), {
      cookie: aliceCookie,
      origin: "http://evil.example",
      bytes: small,
    });
    assert.deepEqual(forged.json, { error: "forbidden", reason: "origin" });
    assert.equal(readdirSync(join(profile("alice"), "web-transfers")).length, 0, "no file left behind");
    assert.equal(readdirSync(join(profile("bob"), "web-transfers")).length, 0, "no file left behind");
  });

  it("a verified contact's new key: flagged, sending refused with nothing sent, until accepted", async () => {
    // alice verified bob (above). bob reinstalls: a new identity key on the same account.
    bobEvents.close();
    await bob.close();
    const reinstalled = new ZimClient({ store: new SqliteDeviceStore(join(profile("bob"), "device.db")) });
    await reinstalled.resetIdentity();
    await reinstalled.close();
    bob = await startDaemon("bob");
    bobCookie = await login(bob);
    bobEvents = await events(bob, bobCookie);
    const hello = await call(bob.port, "POST", "/api/send", {
      cookie: bobCookie,
      body: { to: aliceMe.uuid, text: "New phone, same bob" },
    });
    assert.equal(hello.status, 200, hello.text);
    const changed = await aliceEvents.waitFor((e) => e.type === "identityChanged", 30_000);
    assert.deepEqual(changed, { type: "identityChanged", conversation: bobMe.uuid, blocked: true });
    await aliceEvents.waitFor((e) => e.type === "message" && e.message.text === "New phone, same bob");
    const flagged = async (): Promise<WebConversation | undefined> =>
      ((await call(alice.port, "GET", "/api/conversations", { cookie: aliceCookie })).json as WebConversation[]).find(
        (c) => c.id === bobMe.uuid,
      );
    assert.equal((await flagged())?.keyChanged, true);
    const safety = (await call(alice.port, "GET", "/api/safety/bob", { cookie: aliceCookie })).json as WebSafetyNumber;
    assert.deepEqual([safety.verified, safety.keyChanged], [false, true]);

    const before = (await call(alice.port, "GET", `/api/conversations/${bobMe.uuid}/messages`, { cookie: aliceCookie }))
      .json as WebMessage[];
    for (const to of ["bob", bobMe.uuid]) {
      const refused = await call(alice.port, "POST", "/api/send", {
        cookie: aliceCookie,
        body: { to, text: "Is that really you?" },
      });
      assert.equal(refused.status, 409, refused.text);
      assert.equal((refused.json as { error: string }).error, "identity_changed");
    }
    const file = await call(alice.port, "POST", "/api/files?to=bob&name=x.txt", {
      cookie: aliceCookie,
      bytes: Buffer.from("x"),
    });
    assert.equal(file.status, 409, file.text);
    assert.equal((file.json as { error: string }).error, "identity_changed");
    const after = (await call(alice.port, "GET", `/api/conversations/${bobMe.uuid}/messages`, { cookie: aliceCookie }))
      .json as WebMessage[];
    assert.deepEqual(after, before, "nothing sent, nothing queued");

    const stranger = await call(alice.port, "POST", "/api/identity/nobody/accept", { cookie: aliceCookie });
    assert.equal(stranger.status, 404, stranger.text);
    const forged = await call(alice.port, "POST", "/api/identity/bob/accept", {
      cookie: aliceCookie,
      origin: "http://evil.example",
    });
    assert.deepEqual(forged.json, { error: "forbidden", reason: "origin" });
    const accepted = await call(alice.port, "POST", "/api/identity/bob/accept", { cookie: aliceCookie });
    assert.equal(accepted.status, 200, accepted.text);
    assert.deepEqual(
      [(accepted.json as WebSafetyNumber).verified, (accepted.json as WebSafetyNumber).keyChanged],
      [false, false],
      "accepting is not verifying",
    );
    assert.equal((await flagged())?.keyChanged, undefined);
    const sent = await call(alice.port, "POST", "/api/send", {
      cookie: aliceCookie,
      body: { to: "bob", text: "Welcome back, bob" },
    });
    assert.equal((sent.json as WebSendResponse).status, "sent", sent.text);
    await bobEvents.waitFor((e) => e.type === "message" && e.message.text === "Welcome back, bob");
  });

  it("a bridged group carries its disclosure banners, and a bridges event when they change", async () => {
    const as = (name: string, ...args: string[]): string[] => [...args, "--profile", profile(name)];
    for (const name of ["dave", "ircbot"]) {
      const registered = await cli(as(name, "register", "--server", server.url, "--username", name, "--json"));
      assert.equal(registered.code, 0, registered.stderr);
    }
    const [created] = only(
      ok(await cli(as("dave", "group", "create", "Bridged braai", "alice", "--json"))),
      "groupChanged",
    );
    const groupId = String((created?.group as { id?: string } | undefined)?.id);
    const conversation = `group:${groupId}`;
    await aliceEvents.waitFor((e) => e.type === "conversations");
    await until(
      async () =>
        ((await call(alice.port, "GET", "/api/conversations", { cookie: aliceCookie })).json as WebConversation[]).find(
          (c) => c.id === conversation,
        ),
      "the group on alice's list",
    );
    const unbridged = (
      (await call(alice.port, "GET", "/api/conversations", { cookie: aliceCookie })).json as WebConversation[]
    ).find((c) => c.id === conversation)!;
    assert.equal(unbridged.bridges, undefined);
    ok(await cli(as("dave", "group", "bridge", "Bridged braai", "ircbot", "irc", "#braai", "--json")));
    await aliceEvents.waitFor((e) => e.type === "bridges" && e.conversation === conversation, 30_000);
    const bridged = (
      (await call(alice.port, "GET", "/api/conversations", { cookie: aliceCookie })).json as WebConversation[]
    ).find((c) => c.id === conversation)!;
    assert.equal(bridged.bridges?.length, 1);
    assert.match(
      bridged.bridges![0]!,
      /^Bridged: messages in this group are decrypted by (ircbot|[0-9a-f-]{36}) and sent in plaintext to IRC #braai\. Attachments are not bridged\.$/,
    );
  });

  it("no private key material, session state or password in any HTTP or WebSocket payload", async () => {
    const secrets: { what: string; bytes: Buffer }[] = [];
    for (const name of ["alice", "bob", "carol-web", "alice-laptop"]) {
      const db = new Database(join(profile(name), "device.db"), { readonly: true });
      try {
        const local = db.prepare("SELECT data, identity FROM local").get() as { data: string; identity: Buffer };
        secrets.push({ what: `${name} identity private key`, bytes: local.identity });
        const data = JSON.parse(local.data) as { password: string; accessKey: string };
        secrets.push({ what: `${name} device password`, bytes: Buffer.from(data.password) });
        secrets.push({ what: `${name} access key`, bytes: Buffer.from(data.accessKey, "base64") });
        const keys = db.prepare("SELECT kind, id, record FROM pre_keys").all() as {
          kind: string;
          id: number;
          record: Buffer;
        }[];
        assert.ok(
          keys.some((k) => k.kind === "ec") &&
            keys.some((k) => k.kind === "signed") &&
            keys.some((k) => k.kind === "kyber"),
        );
        for (const k of keys) {
          const what = `${name} ${k.kind} pre-key ${k.id}`;
          const secret =
            k.kind === "ec"
              ? PreKeyRecord.deserialize(new Uint8Array(k.record)).privateKey().serialize()
              : k.kind === "signed"
                ? SignedPreKeyRecord.deserialize(new Uint8Array(k.record)).privateKey().serialize()
                : KyberPreKeyRecord.deserialize(new Uint8Array(k.record)).secretKey().serialize();
          secrets.push({ what, bytes: Buffer.from(secret) });
          secrets.push({ what: `${what} record`, bytes: k.record });
        }
        const senderKeys = db.prepare("SELECT key, value FROM kv WHERE key LIKE 'senderKey:%'").all() as {
          key: string;
          value: string;
        }[];
        if (name === "alice") assert.ok(senderKeys.length, "alice holds a sender key (the group)");
        for (const s of senderKeys) secrets.push({ what: `${name} sender key`, bytes: Buffer.from(s.value, "base64") });
        const sessions = db.prepare("SELECT address, record FROM sessions").all() as {
          address: string;
          record: Buffer;
        }[];
        assert.ok(sessions.length);
        for (const s of sessions) secrets.push({ what: `${name} session ${s.address}`, bytes: s.record });
        const files = db.prepare("SELECT id, attachment FROM messages WHERE attachment IS NOT NULL").all() as {
          id: string;
          attachment: string;
        }[];
        // alice and bob traded files (above); the others need not hold any.
        if (name === "alice" || name === "bob") assert.ok(files.length >= 2, `${name} holds messages with files`);
        for (const f of files) {
          const pointer = JSON.parse(f.attachment) as { key: string; digest: string; id: string };
          secrets.push({ what: `${name} attachment key (${f.id})`, bytes: Buffer.from(pointer.key, "base64") });
          secrets.push({ what: `${name} attachment digest (${f.id})`, bytes: Buffer.from(pointer.digest, "base64") });
          secrets.push({ what: `${name} attachment id (${f.id})`, bytes: Buffer.from(pointer.id, "base64url") });
        }
      } finally {
        db.close();
      }
    }
    // The launch tokens are text too: the page gets its token from the URL, never from the daemon.
    for (const daemon of [alice, bob])
      secrets.push({ what: "a launch token password", bytes: Buffer.from(daemon.token) });
    assert.ok(payloads.length > 50, `${payloads.length} payloads recorded`);
    // Any 16 bytes of a secret (a 31-byte stretch of it always holds one of these, at any offset), raw, hex or
    // base64 at any alignment: every hex or base64 run in a payload is decoded and every 16-byte window looked up.
    const chunks = new Map<string, string>();
    // The first holder names a secret (a linked device holds its account's identity key too).
    const note = (bytes: Buffer, what: string): void => {
      const key = bytes.toString("hex");
      if (!chunks.has(key)) chunks.set(key, what);
    };
    for (const secret of secrets) {
      if (secret.bytes.length < 16) throw new Error(`${secret.what} is shorter than 16 bytes`);
      for (let i = 0; i + 16 <= secret.bytes.length; i += 16) note(secret.bytes.subarray(i, i + 16), secret.what);
      note(secret.bytes.subarray(-16), secret.what);
    }
    const hexRuns = /[0-9a-fA-F]{32,}/g;
    const base64Runs = /[A-Za-z0-9+/_-]{22,}={0,2}/g;
    const leak = (payload: string): string | undefined => {
      const views: Buffer[] = [Buffer.from(payload, "utf8"), Buffer.from(payload, "latin1")];
      for (const run of payload.match(hexRuns) ?? []) {
        views.push(Buffer.from(run.length % 2 ? run.slice(1) : run, "hex"));
        if (run.length % 2) views.push(Buffer.from(run.slice(0, -1), "hex"));
      }
      for (const run of payload.match(base64Runs) ?? []) {
        const standard = run.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
        for (let skip = 0; skip < 4; skip++) views.push(Buffer.from(standard.slice(skip), "base64"));
      }
      for (const view of views)
        for (let i = 0; i + 16 <= view.length; i++) {
          const found = chunks.get(view.subarray(i, i + 16).toString("hex"));
          if (found) return found;
        }
      return secrets.find((s) => s.what.endsWith("password") && payload.includes(s.bytes.toString("utf8")))?.what;
    };
    // The scan finds a key however it is written (a control, so that a broken scan cannot pass).
    const identity = secrets[0]!.bytes;
    for (const planted of [
      JSON.stringify({ k: identity.toString("base64") }),
      JSON.stringify({ k: `x${identity.toString("base64url")}` }),
      JSON.stringify({ k: Buffer.concat([Buffer.from([7]), identity]).toString("base64") }),
      JSON.stringify({ k: identity.toString("hex").toUpperCase() }),
      `{"k":"${identity.toString("latin1")}"}`,
    ])
      assert.equal(leak(planted), secrets[0]!.what, planted);
    for (const payload of payloads)
      assert.equal(leak(payload), undefined, `a secret in a payload: ${payload.slice(0, 200)}`);
  });
});
