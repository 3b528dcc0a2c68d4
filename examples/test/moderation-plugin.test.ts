/**
 * The admin's path: `zimchat serve --config examples/moderation-plugin/zimchat.config.json`
 * (the real CLI, as a child process) turns on moderation and key transparency;
 * a config the plugin refuses stops start-up with the plugin and field named.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ApiError, MemoryDeviceStore, ZimClient } from "@zimchat/client";
import { keyLogHeadResponseSchema } from "@zimchat/protocol";
import pg from "pg";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const bin = join(root, "server/bin/zimchat.js");
const exampleConfig = join(root, "examples/moderation-plugin/zimchat.config.json");

const dir = mkdtempSync(join(tmpdir(), "zimchat-example-config-"));
const base = process.env.ZIMCHAT_TEST_DATABASE_URL;
const schema = `e_${randomBytes(6).toString("hex")}`;
function databaseUrl(): string {
  if (!base?.startsWith("postgres")) return `file:${join(dir, "zimchat.db")}`;
  const url = new URL(base);
  url.searchParams.set("schema", schema);
  return url.toString();
}

/**
 * Runs `zimchat serve` with a config file; resolves with its URL once listening, or rejects with its output when it
 * exits.
 */
function serve(config: string, logs: string[]): { child: ChildProcess; listening: Promise<string> } {
  const child = spawn(
    process.execPath,
    [
      bin,
      "serve",
      "--config",
      config,
      "--data-dir",
      join(dir, "data"),
      "--database-url",
      databaseUrl(),
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--registration",
      "open",
      "--rate-limits",
      "off",
    ],
    { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
  );
  createInterface({ input: child.stderr! }).on("line", (l) => logs.push(l));
  const listening = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(line);
      const port = /"port":(\d+).*"msg":"listening"/.exec(line)?.[1];
      if (port) resolve(`http://127.0.0.1:${port}`);
    });
    child.once("exit", (code) => reject(Object.assign(new Error(`exited with ${code}`), { code })));
  });
  return { child, listening };
}

let server: { child: ChildProcess; listening: Promise<string> };
const logs: string[] = [];
before(() => {
  server = serve(exampleConfig, logs);
});
after(async () => {
  if (server.child.exitCode === null) {
    const exited = new Promise((resolve) => server.child.once("exit", resolve));
    server.child.kill("SIGTERM");
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
  if (base?.startsWith("postgres")) {
    const client = new pg.Client({ connectionString: base });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => client.end());
  }
});

test("the example config enables moderation and key transparency on the real server", async () => {
  const url = await server.listening;
  assert.ok(
    logs.some((l) => l.includes("moderation rules loaded")),
    "the moderation plugin started",
  );

  const refused = await ZimClient.register({ serverUrl: url, username: "admin", store: new MemoryDeviceStore() }).then(
    () => assert.fail("a reserved name registered"),
    (e: unknown) => e,
  );
  assert.ok(refused instanceof ApiError);
  assert.equal(refused.body.pluginCode, "username_reserved");

  const alice = await ZimClient.register({ serverUrl: url, username: "alice", store: new MemoryDeviceStore() });
  try {
    const { uuid, deviceId, password } = alice.local;
    const limits = await fetch(`${url}/plugins/moderation/v1/limits`, {
      headers: { authorization: `Basic ${Buffer.from(`${uuid}.${deviceId}:${password}`).toString("base64")}` },
    });
    assert.deepEqual(await limits.json(), { sendsPerHour: 600, sentThisHour: 0, suspended: false });

    // Alice's identity key was appended to the log when she registered.
    const head = keyLogHeadResponseSchema.parse(await (await fetch(`${url}/plugins/key-transparency/v1/head`)).json());
    assert.equal(head.head.treeSize, 1);
  } finally {
    await alice.close();
  }
});

test("a config the plugin's schema refuses stops `zimchat serve`, naming the plugin and the field", async () => {
  const bad = JSON.parse(readFileSync(exampleConfig, "utf8")) as { plugins: { config?: Record<string, unknown> }[] };
  bad.plugins[0]!.config = { ...bad.plugins[0]!.config, sendsPerHour: "lots" };
  const badConfig = join(dir, "bad.json");
  writeFileSync(badConfig, JSON.stringify(bad));
  const output: string[] = [];
  const run = serve(badConfig, output);
  const error = await run.listening.then(
    () => assert.fail("started with a bad config"),
    (e: unknown) => e as { code: number },
  );
  assert.notEqual(error.code, 0);
  const text = output.join("\n");
  assert.match(text, /moderation/);
  assert.match(text, /sendsPerHour/);
});
