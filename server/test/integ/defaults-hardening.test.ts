/**
 * Hardened defaults: a 22-character password is refused, failed logins are
 * limited, data files are created owner-only, and CLI mistakes end in a
 * message, not a stack trace.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import request from "supertest";
import { io as connectClient } from "socket.io-client";
import { limits } from "@zimchat/protocol";
import { registerDevice, startServer, type TestServer } from "../support/harness.js";
import { startChildServer } from "../support/child-server.js";
import { SignalDevice } from "@zimchat/testing/signal";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));
const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

/** GET /v1/keys/count with Basic credentials, from a chosen loopback address. */
function keyCountFrom(
  server: TestServer,
  localAddress: string,
  auth: string,
): Promise<{ status: number; code?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      new URL("/v1/keys/count", server.url),
      { localAddress, agent: false, headers: { authorization: auth } },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () =>
          resolve({ status: res.statusCode!, code: text ? (JSON.parse(text) as { code?: string }).code : undefined }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function handshake(
  url: string,
  auth: { username: string; password: string },
): Promise<{ connected: boolean; code?: string }> {
  const socket = connectClient(url, { auth, transports: ["websocket"], reconnection: false, forceNew: true });
  try {
    return await new Promise((resolve, reject) => {
      socket.once("connect", () => resolve({ connected: true }));
      socket.once("connect_error", (error) =>
        resolve({ connected: false, code: (error as Error & { data?: { code?: string } }).data?.code }),
      );
      setTimeout(() => reject(new Error("no answer to the handshake")), 5000).unref();
    });
  } finally {
    socket.close();
  }
}

describe("defaults: passwords and failed authentication", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server.stop());

  it("refuses a 22-character password at registration (the SDK sends 32)", async () => {
    const device = new SignalDevice();
    const body = {
      ...device.registration(`short_${process.pid}`),
      password: randomBytes(16).toString("base64url").slice(0, 22),
    };
    const res = await server.http().post("/v1/accounts").send(body);
    assert.equal(res.status, 400);
    assert.equal(res.body.code, "invalid_request");
    assert.ok(limits.minPasswordLength >= 32);
  });

  it("limits failed logins per address and device (REST and socket), never refusing the owner from another address", async () => {
    const alice = await registerDevice(server.home.httpServer);
    const username = `${alice.uuid}.1`;
    const wrong = basic(username, "W".repeat(32));
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await keyCountFrom(server, "127.0.0.1", wrong)).status);
    assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401), "the first failures are plain 401s");
    assert.equal(statuses[11], 429, "then refused");
    // The right password from the guessing address is refused now too (no oracle)...
    const fromGuesser = await keyCountFrom(server, "127.0.0.1", alice.authHeader);
    assert.equal(fromGuesser.status, 429);
    assert.equal(fromGuesser.code, "too_many_failed_logins");
    const socketFromGuesser = await handshake(server.url, alice.socketAuth);
    assert.deepEqual(socketFromGuesser, { connected: false, code: "too_many_failed_logins" });
    // ...but never from another address.
    assert.equal((await keyCountFrom(server, "127.0.0.2", alice.authHeader)).status, 200);

    // Socket handshakes count too (another device, same address: the per-device bucket is separate).
    const bob = await registerDevice(server.home.httpServer);
    for (let i = 0; i < 10; i++) {
      const answer = await handshake(server.url, { username: `${bob.uuid}.1`, password: "W".repeat(32) });
      assert.deepEqual(answer, { connected: false, code: "unauthorized" });
    }
    assert.deepEqual(await handshake(server.url, bob.socketAuth), { connected: false, code: "too_many_failed_logins" });
    assert.equal((await keyCountFrom(server, "127.0.0.3", bob.authHeader)).status, 200);

    const metrics = await server.http().get("/metrics");
    assert.match(metrics.text, /zimchat_rate_limit_refusals_total\{limit="failedAuthPerAddressAndDevice"\} [1-9]/);
  });
});

describe("defaults: files under the data dir are private (real CLI)", () => {
  it("creates the database, WAL, keys and attachments 0600 in 0700 directories", async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), "zimchat-modes-")), "data");
    const child = await startChildServer(["--data-dir", dataDir, "--registration", "open", "--log-level", "warn"]);
    try {
      const alice = await registerDevice(child.url);
      const upload = await request(child.url)
        .post("/v1/attachments")
        .set("Authorization", alice.authHeader)
        .set("content-type", "application/octet-stream")
        .send(randomBytes(2048));
      assert.ok(upload.status < 300, `attachment upload: ${upload.status}`);
      const seen: string[] = [];
      const walk = (dir: string): void => {
        for (const name of readdirSync(dir)) {
          const path = join(dir, name);
          const stat = statSync(path);
          seen.push(name);
          assert.equal(stat.mode & 0o077, 0, `${path} is ${(stat.mode & 0o777).toString(8)}`);
          if (stat.isDirectory()) walk(path);
        }
      };
      assert.equal(statSync(dataDir).mode & 0o077, 0, "the data dir itself");
      walk(dataDir);
      assert.ok(seen.includes("zimchat.db-wal") && seen.includes("zimchat.db"), seen.join(", "));
    } finally {
      child.child.kill("SIGTERM");
      await child.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("defaults: CLI mistakes are one line, no stack trace", () => {
  const dir = mkdtempSync(join(tmpdir(), "zimchat-cli-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  function expectOneLine(args: string[], pattern: RegExp): void {
    const run = spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 30_000, cwd: dir });
    const lines = run.stderr.trim().split("\n");
    assert.notEqual(run.status, 0, `${args.join(" ")}: exit code`);
    assert.equal(lines.length, 1, `${args.join(" ")}: stderr is one line:\n${run.stderr}`);
    assert.doesNotMatch(run.stderr, /^\s+at /m, "no stack frames");
    assert.match(lines[0]!, pattern, args.join(" "));
  }

  it("invite create --uses 0 / abc, bad option values, a bad config file", () => {
    const data = ["--data-dir", join(dir, "data")];
    expectOneLine(["invite", "create", "--uses", "0", ...data], /^zimchat: .*--uses.*at least 1/);
    expectOneLine(["invite", "create", "--uses", "abc", ...data], /^zimchat: .*--uses.*whole number/);
    expectOneLine(["serve", "--port", "99999", ...data], /^zimchat: .*port/);
    expectOneLine(["serve", "--registration", "maybe", ...data], /^zimchat: .*registration/);
    expectOneLine(["serve", "--config", join(dir, "missing.json")], /^zimchat: .*missing\.json/);
    writeFileSync(join(dir, "broken.json"), "{ not json");
    expectOneLine(["serve", "--config", join(dir, "broken.json")], /^zimchat: .*broken\.json/);
    expectOneLine(["sevre"], /^zimchat: .*unknown command/);
  });

  it("a port already in use", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const child = spawn(
        process.execPath,
        [
          bin,
          "serve",
          "--port",
          String(port),
          "--host",
          "127.0.0.1",
          "--data-dir",
          join(dir, "busy"),
          "--log-level",
          "warn",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => (child.kill("SIGKILL"), resolve(null)), 30_000);
        child.once("exit", (c) => (clearTimeout(timer), resolve(c)));
      });
      assert.notEqual(code, 0);
      assert.notEqual(code, null, "exited by itself");
      const lines = stderr.trim().split("\n");
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0]!, new RegExp(`^zimchat: port ${port} .*already in use`));
    } finally {
      blocker.close();
    }
  });
});
