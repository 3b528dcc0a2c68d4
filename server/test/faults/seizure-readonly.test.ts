import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { SeizureReport } from "../../src/seizure/report.js";
import {
  encryptFor,
  roomyRateLimits,
  startServer,
  startSession,
  testProvider,
  type TestServer,
} from "../support/harness.js";

// `zimchat seizure-report` must not write to what it inspects. Before: on
// SQLite it created -shm (and -wal) files in the seized data directory. The
// test copies a running server's data directory byte for byte (WAL included,
// as someone seizing it would) and checks that the report leaves the copy
// byte-identical: the same names, sizes, hashes and modification times.

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));

/** Every entry under `dir`: its kind, size, SHA-256 and mtime. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const s = statSync(path);
      if (s.isDirectory()) {
        out.set(relative(dir, path), `dir mode ${s.mode.toString(8)} mtime ${s.mtimeMs}`);
        walk(path);
      } else {
        out.set(
          relative(dir, path),
          `${s.size} bytes sha256 ${createHash("sha256").update(readFileSync(path)).digest("hex")} mode ${s.mode.toString(8)} mtime ${s.mtimeMs}`,
        );
      }
    }
  };
  walk(dir);
  return out;
}

describe("zimchat seizure-report is read-only", () => {
  let server: TestServer;
  const seized = mkdtempSync(join(tmpdir(), "zimchat-seized-"));
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits });
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    for (const text of ["one", "two", "three"]) {
      const messages = await encryptFor(
        alice,
        { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
        text,
      );
      const res = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      assert.equal(res.status, 200);
    }
  });
  after(async () => {
    await server?.stop();
    rmSync(seized, { recursive: true, force: true });
  });

  it("leaves the inspected data directory byte-identical and still reads the rows in the WAL", async () => {
    // A byte copy of the running server's files, as taken from a seized disk (the WAL has not been checkpointed).
    cpSync(server.dataDir, seized, { recursive: true, preserveTimestamps: true });
    if (testProvider === "sqlite") assert.ok(statSync(join(seized, "zimchat.db-wal")).size > 0, "the copy holds a WAL");
    rmSync(join(seized, "zimchat.db-shm"), { force: true });
    const before = snapshot(seized);
    const databaseUrl = testProvider === "sqlite" ? `file:${join(seized, "zimchat.db")}` : server.databaseUrl;
    const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [bin, "seizure-report", "--data-dir", seized, "--database-url", databaseUrl, "--json"],
        { env: { ...process.env, DATABASE_URL: "", ZIMCHAT_DATA_DIR: "" }, maxBuffer: 16 << 20 },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
    assert.ok(run.stdout.trim().startsWith("{"), `no JSON report (exit ${run.code}): ${run.stderr}`);
    const report = JSON.parse(run.stdout) as SeizureReport;
    assert.equal(report.envelopes.total, 3, "the queued envelopes (in the WAL) are seen");
    assert.ok(
      report.held.some((line) => line.startsWith("timing:") && /consecutive queue numbers/.test(line)),
      "the report says what timing reveals",
    );
    assert.deepEqual(snapshot(seized), before, "the report wrote to the inspected directory");
  });
});
