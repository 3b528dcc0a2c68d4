import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import BetterSqlite3 from "better-sqlite3";
import { freshDatabase, testProvider } from "../support/harness.js";
import { callJson, startChildServer, type ChildServer } from "../support/child-server.js";
import { SignalDevice } from "@zimchat/testing/signal";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));
const adminToken = `cli-${randomBytes(18).toString("base64url")}`;

/** Runs the real `zimchat` CLI as a child process. */
async function zimchat(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], {
      env: { ...process.env, ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

const call = callJson;

async function register(url: string, username: string, inviteToken?: string): Promise<SignalDevice> {
  const device = new SignalDevice();
  const res = await call(url, "POST", "/v1/accounts", device.registration(username, inviteToken));
  assert.equal(res.status, 201, JSON.stringify(res.body));
  device.uuid = res.body.uuid;
  return device;
}

async function sendOne(url: string, from: SignalDevice, to: SignalDevice, text: string): Promise<number> {
  const message = await from.encrypt(to.uuid, 1, text);
  const res = await call(
    url,
    "PUT",
    `/v1/messages/${to.uuid}`,
    { messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: to.registrationId }] },
    from.authHeader,
  );
  return res.status;
}

describe("zimchat admin (the real CLI against a real server)", () => {
  const db = freshDatabase();
  const args = [
    "--data-dir",
    db.dataDir,
    "--database-url",
    db.url,
    "--registration",
    "invite",
    "--rate-limits",
    "off",
    "--log-level",
    "warn",
    "--admin-token",
    adminToken,
  ];
  let server: ChildServer;
  let cli: (args: string[]) => ReturnType<typeof zimchat>;
  before(async () => {
    server = await startChildServer(args);
    cli = (more) => zimchat(["admin", "--url", server.url, ...more], { ZIMCHAT_ADMIN_TOKEN: adminToken });
  });
  after(async () => {
    server.child.kill("SIGKILL");
    await server.exited;
    await db.drop();
  });

  it("says so clearly when the server is unreachable, the token is wrong or missing", async () => {
    const unreachable = await zimchat(["admin", "--url", "http://127.0.0.1:9", "stats"], {
      ZIMCHAT_ADMIN_TOKEN: adminToken,
    });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot reach a ZimChat server at http:\/\/127\.0\.0\.1:9/);
    const wrong = await zimchat(["admin", "--url", server.url, "--token", "x".repeat(20), "stats"]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /refused the admin token/);
    const missing = await zimchat(["admin", "--url", server.url, "stats"], { ZIMCHAT_ADMIN_TOKEN: "" });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no admin token/);
  });

  it("creates an invite that registers, lists it, shows stats, disables and enables an account, rotates the certificate", async () => {
    const created = await cli(["invite", "create", "--uses", "3", "--expires", "1h", "--json"]);
    assert.equal(created.code, 0, created.stderr);
    const invite = JSON.parse(created.stdout) as { id: string; token: string };
    const alice = await register(server.url, "alice_cli", invite.token);
    const listed = await cli(["invite", "list"]);
    assert.match(listed.stdout, new RegExp(`${invite.id}  1/3 used`));
    assert.ok(!listed.stdout.includes(invite.token));

    const stats = JSON.parse((await cli(["stats", "--json"])).stdout) as { accounts: number; devices: number };
    assert.equal(stats.accounts, 1);
    assert.equal(stats.devices, 1);
    const accounts = await cli(["accounts"]);
    assert.match(
      accounts.stdout,
      new RegExp(`${alice.uuid}  alice_cli  created \\d{4}-\\d{2}-\\d{2}  1 device\\(s\\)`),
    );

    assert.equal((await cli(["account", "disable", "alice_cli"])).code, 0);
    assert.equal((await call(server.url, "GET", "/v1/accounts/whoami", undefined, alice.authHeader)).status, 403);
    assert.equal((await cli(["account", "enable", alice.uuid])).code, 0);
    assert.equal((await call(server.url, "GET", "/v1/accounts/whoami", undefined, alice.authHeader)).status, 200);
    const unknown = await cli(["account", "disable", "nobody_at_all"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /not_found/);

    const rotated = await cli(["rotate-certificate", "--json"]);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.equal(JSON.parse(rotated.stdout).keyId, JSON.parse(rotated.stdout).previousKeyId + 1);
    assert.equal((await cli(["invite", "revoke", invite.id])).code, 0);
  });

  it(
    "backs up while the server takes writes; restore (offline) puts that state back and the server serves it",
    { skip: testProvider !== "sqlite" && "PostgreSQL: backup answers backup_unsupported" },
    async () => {
      const invite = JSON.parse((await cli(["invite", "create", "--uses", "5", "--json"])).stdout) as { token: string };
      const bob = await register(server.url, "bob_cli", invite.token);
      const carol = await register(server.url, "carol_cli", invite.token);
      const bundle = await call(server.url, "GET", `/v1/keys/${bob.uuid}/*`, undefined, carol.authHeader);
      await carol.processBundle(bob.uuid, bundle.body);

      // Writes keep landing while the backup runs.
      let writing = true;
      let sent = 0;
      const writer = (async () => {
        while (writing) if ((await sendOne(server.url, carol, bob, `m${sent}`)) === 200) sent++;
      })();
      while (sent < 20) await new Promise((resolve) => setTimeout(resolve, 10));
      const backupFile = join(db.dataDir, "backup.db");
      const backup = await cli(["backup", backupFile]);
      const sentDuringBackup = sent;
      while (sent < sentDuringBackup + 20) await new Promise((resolve) => setTimeout(resolve, 10));
      writing = false;
      await writer;
      assert.equal(backup.code, 0, backup.stderr);

      const copy = new BetterSqlite3(backupFile, { readonly: true });
      assert.deepEqual(copy.pragma("integrity_check"), [{ integrity_check: "ok" }]);
      const backedUp = (
        copy.prepare(`SELECT COUNT(*) AS n FROM "Envelope" WHERE "accountId" = ?`).get(bob.uuid) as { n: number }
      ).n;
      copy.close();
      assert.ok(backedUp >= 20 && backedUp < sent, `the backup holds a snapshot: ${backedUp} of ${sent} envelopes`);

      // After the backup: a new account that the restore must take away again.
      const dave = await register(server.url, "dave_cli", invite.token);

      const whileRunning = await cli(["restore", backupFile, "--data-dir", db.dataDir, "--database-url", db.url]);
      assert.equal(whileRunning.code, 1);
      assert.match(whileRunning.stderr, /still has this database open/);

      server.child.kill("SIGTERM");
      assert.equal((await server.exited).code, 0);
      const notSqlite = join(db.dataDir, "not-a-db");
      writeFileSync(notSqlite, "hello, this is not SQLite at all ".repeat(200));
      const bad = await cli(["restore", notSqlite, "--data-dir", db.dataDir, "--database-url", db.url]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /not a SQLite database|cannot be opened/);

      const restored = await cli(["restore", backupFile, "--data-dir", db.dataDir, "--database-url", db.url]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.ok(
        readdirSync(db.dataDir).some((name) => name.startsWith("zimchat.db.before-restore-")),
        "the replaced database is kept",
      );
      // The seizure report knows the kept database for what it is (not an attachment blob that fails its ciphertext
      // check).
      const report = await zimchat(["seizure-report", "--json", "--data-dir", db.dataDir, "--database-url", db.url]);
      const files = (JSON.parse(report.stdout) as { files: { path: string; kind: string }[] }).files;
      assert.equal(files.find((f) => f.path.startsWith("zimchat.db.before-restore-"))?.kind, "database");

      server = await startChildServer(args);
      assert.equal((await call(server.url, "GET", "/v1/accounts/whoami", undefined, bob.authHeader)).status, 200);
      assert.equal(
        (await call(server.url, "GET", "/v1/accounts/whoami", undefined, dave.authHeader)).status,
        401,
        "the account made after the backup is gone",
      );
      let queued = 0;
      for (;;) {
        const page = await call(server.url, "GET", "/v1/messages", undefined, bob.authHeader);
        queued += page.body.envelopes.length;
        const ids = page.body.envelopes.map((e: { id: string }) => e.id);
        if (ids.length) await call(server.url, "POST", "/v1/messages/ack", { ids }, bob.authHeader);
        if (!page.body.more) break;
      }
      assert.equal(queued, backedUp, "the restored server serves exactly the backed-up queue");
      assert.ok(!existsSync(`${backupFile}.part`));
    },
  );

  it("answers backup on PostgreSQL with a pointer to pg_dump", { skip: testProvider !== "postgresql" }, async () => {
    const res = await cli(["backup", join(db.dataDir, "never.db")]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /pg_dump.*backup_unsupported/);
    assert.ok(!existsSync(join(db.dataDir, "never.db")));
  });
});
