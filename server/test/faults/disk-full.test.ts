import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { io as connectClient, type Socket } from "socket.io-client";
import type { ClientToServerEvents, Envelope, ServerToClientEvents } from "@zimchat/protocol";
import { freshDatabase, testProvider } from "../support/harness.js";
import { SignalDevice } from "@zimchat/testing/signal";

// Disk full, with the server's stdout on the same full filesystem as its data
// (a small tmpfs). Before: the first SQLITE_FULL error's log write failed with
// ENOSPC, the loop hung (no answer to /healthz or sends), and when space came
// back the process died of an unhandled SonicBoom `error` event. Now: log lines
// are buffered or dropped, a send answers 507 storage_full with Retry-After,
// /readyz is not ready, nothing acknowledged is lost, and sends resume by
// themselves once space is freed. On PostgreSQL the database is not on the
// tmpfs: the test checks the log side (the server keeps answering).

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One JSON request with a 5 s budget: a hung server fails the test instead of hanging it. */
async function call(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  auth?: string,
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
    body: body === undefined ? null : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

/** Fills the filesystem holding `path` with one file; returns how many bytes it took. */
function fill(path: string): number {
  const fd = openSync(path, "w");
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  let written = 0;
  try {
    for (;;) {
      try {
        written += writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOSPC") break;
        throw error;
      }
    }
    // The last few bytes too, so nothing is left.
    for (const size of [4096, 512, 1]) {
      try {
        for (;;) written += writeSync(fd, chunk.subarray(0, size));
      } catch {
        // ENOSPC: next smaller size.
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}

describe("disk full, with the log on the full disk", () => {
  const mountPoint = mkdtempSync(join(tmpdir(), "zimchat-full-"));
  let mounted = false;
  let mountError = "";
  const db = freshDatabase();
  const dataDir = join(mountPoint, "data");
  const logFile = join(mountPoint, "server.log");
  const filler = join(mountPoint, "filler");
  let child: ChildProcess | null = null;
  let exited: Promise<number | null> = Promise.resolve(null);
  let url = "";

  before(async () => {
    const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mountPoint], { encoding: "utf8" });
    mounted = mount.status === 0;
    mountError = mount.stderr || mount.error?.message || "";
    if (!mounted) return;
    mkdirSync(dataDir, { mode: 0o700 });
    const databaseUrl = testProvider === "sqlite" ? `file:${join(dataDir, "zimchat.db")}` : db.url;
    const log = openSync(logFile, "w");
    // --log-level debug: every request writes a log line, so the full disk is hit by the log at once.
    child = spawn(
      process.execPath,
      [
        bin,
        "serve",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--data-dir",
        dataDir,
        "--database-url",
        databaseUrl,
        "--registration",
        "open",
        "--rate-limits",
        "off",
        "--log-level",
        "debug",
      ],
      {
        stdio: ["ignore", log, "pipe"],
      },
    );
    closeSync(log);
    exited = new Promise((resolve) => child!.once("exit", (code) => resolve(code)));
    const deadline = Date.now() + 20_000;
    while (!url && Date.now() < deadline) {
      await sleep(100);
      const match = /"port":(\d+).*"msg":"listening"/.exec(readFileSync(logFile, "utf8"));
      if (match) url = `http://127.0.0.1:${match[1]}`;
    }
    assert.ok(url, `the server did not start:\n${readFileSync(logFile, "utf8")}`);
  });

  after(async () => {
    if (child && child.exitCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
    if (mounted) spawnSync("umount", ["-l", mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
    await db.drop();
  });

  it("answers 507 storage_full, is not ready, loses nothing acknowledged, and resumes once space is freed", async (t) => {
    if (!mounted)
      return t.skip(`mount -t tmpfs is not permitted here (${mountError.trim()}): the disk-full test needs root`);
    const alice = new SignalDevice();
    const bob = new SignalDevice();
    for (const [device, name] of [
      [alice, "alice_full"],
      [bob, "bob_full"],
    ] as const) {
      const res = await call(url, "POST", "/v1/accounts", device.registration(name));
      assert.equal(res.status, 201);
      device.uuid = res.body.uuid;
    }
    const bundle = await call(url, "GET", `/v1/keys/${bob.uuid}/1`, undefined, alice.authHeader);
    await alice.processBundle(bob.uuid, bundle.body);
    const acknowledged = new Set<string>();
    let sent = 0;
    const send = async (): Promise<{ status: number; body: any; headers: Headers }> => {
      const { type, content } = await alice.encrypt(bob.uuid, 1, `message ${sent++}`);
      const res = await call(
        url,
        "PUT",
        `/v1/messages/${bob.uuid}`,
        { messages: [{ type, content, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] },
        alice.authHeader,
      );
      if (res.status === 200) acknowledged.add(res.body.envelopes[0].id);
      return res;
    };
    for (let i = 0; i < 10; i++) assert.equal((await send()).status, 200);

    const filled = fill(filler);
    assert.ok(filled > 0);
    // Enough requests (one debug line each) to fill the log file's last page: from here on every log write fails.
    for (let i = 0; i < 60; i++) assert.equal((await call(url, "GET", "/healthz")).status, 200);

    // Sends until the database needs a page it cannot get (SQLite may first reuse free WAL space).
    let refused: Awaited<ReturnType<typeof send>> | null = null;
    for (let i = 0; i < 200 && !refused; i++) {
      const res = await send();
      if (res.status !== 200) refused = res;
    }
    // An attachment upload (its file is on the full disk on either database) is refused the same way.
    const upload = await fetch(`${url}/v1/attachments`, {
      method: "POST",
      headers: { authorization: alice.authHeader, "content-type": "application/octet-stream" },
      body: new Uint8Array(256 * 1024).fill(7),
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(
      upload.status,
      507,
      `attachment upload on a full disk: ${upload.status} ${await upload.clone().text()}`,
    );
    assert.equal(((await upload.json()) as { code: string }).code, "storage_full");
    assert.ok(Number(upload.headers.get("retry-after")) > 0, "Retry-After on the upload");
    const health = await call(url, "GET", "/healthz");
    assert.equal(health.status, 200, "/healthz must answer while the disk is full");
    const ready = await call(url, "GET", "/readyz");
    assert.equal(ready.status, 503, "/readyz must be not ready while the disk is full");
    if (testProvider === "sqlite") {
      assert.ok(refused, "a send must be refused once the disk is full");
      assert.equal(refused.status, 507);
      assert.equal(refused.body.code, "storage_full");
      assert.ok(Number(refused.headers.get("retry-after")) > 0, "Retry-After");
      assert.equal((await send()).status, 507, "still refused while full");
      // The same refusal over the socket.
      const socket: Socket<ServerToClientEvents, ClientToServerEvents> = connectClient(url, {
        auth: alice.socketAuth,
        transports: ["websocket"],
        reconnection: false,
        forceNew: true,
      });
      try {
        const { type, content } = await alice.encrypt(bob.uuid, 1, `message ${sent++}`);
        const answer = await socket.timeout(5000).emitWithAck("send", {
          destination: bob.uuid,
          messages: [{ type, content, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }],
        });
        assert.equal(answer.ok, false);
        assert.equal(!answer.ok && answer.status, 507);
      } finally {
        socket.close();
      }
    } else {
      assert.equal(refused, null, "PostgreSQL is not on the full disk: sends go on");
    }
    assert.equal(child!.exitCode, null, "the server must not die of a failing log");

    unlinkSync(filler);
    // Sending resumes by itself (no restart), and the server outlives the log's recovery.
    let resumed = false;
    for (let i = 0; i < 50 && !resumed; i++) {
      resumed = (await send()).status === 200;
      if (!resumed) await sleep(200);
    }
    assert.ok(resumed, "sends must succeed again once space is freed");
    assert.equal((await call(url, "GET", "/readyz")).status, 200, "/readyz must be ready again");
    await sleep(1500); // the log destination retries once a second
    assert.equal(child!.exitCode, null, "the server must survive the log destination's recovery");
    const metrics = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    assert.match(metrics, /^zimchat_log_lines_dropped_total \d+$/m, "dropped log lines are counted");

    // Every acknowledged envelope is delivered.
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = connectClient(url, {
      auth: bob.socketAuth,
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
    const received: Envelope[] = [];
    socket.on("envelopes", (batch, confirm) => {
      received.push(...batch);
      confirm?.();
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("queue-empty", () => resolve());
      socket.once("connect_error", reject);
      setTimeout(() => reject(new Error("no queue-empty")), 10_000).unref();
    });
    socket.close();
    const ids = new Set(received.map((e) => e.id));
    for (const id of acknowledged) assert.ok(ids.has(id), `acknowledged envelope ${id} was lost`);
    assert.equal(ids.size, acknowledged.size, "nothing refused was stored");
    // The log says the destination failed and came back (lines were buffered, none lost silently).
    const log = readFileSync(logFile, "utf8");
    if (testProvider === "sqlite") assert.match(log, /"failure":"ENOSPC"/);
    // The warning logged while the disk was full was buffered, not lost.
    assert.match(log, /"msg":"storage is full: writes answer 507/);
    console.log(
      `disk full: ${acknowledged.size} acknowledged sends delivered, filler ${Math.round(filled / 1024)} KiB`,
    );
  });
});
