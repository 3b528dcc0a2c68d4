/**
 * The single-file binary (`npm run build:binary`): built from the current
 * sources, copied alone into an empty directory and run there with a
 * minimal environment (no NODE_PATH, the cwd far from any node_modules), it
 * serves a real register/send/receive round trip on its embedded SQLite.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { MemoryDeviceStore, ZimClient, type MessageEvent } from "@zimchat/client";

const root = fileURLToPath(new URL("../../../../", import.meta.url));
const postgresRun = Boolean(process.env.ZIMCHAT_TEST_DATABASE_URL);
const run = promisify(execFile);

/**
 * The binary's own environment: nothing of this process's (no NODE_PATH,
 * NODE_OPTIONS, DATABASE_URL), and a PATH with no node on it.
 */
function binaryEnv(home: string): Record<string, string> {
  return { PATH: join(home, "empty-path"), HOME: home, XDG_CACHE_HOME: join(home, "cache") };
}

interface Served {
  child: ChildProcess;
  url: string;
  fingerprint: string;
  logs: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  startupMs: number;
}

/** Starts `./zimchat serve` in `dir` and waits for the "listening" and trust-root log lines. */
async function serve(dir: string, home: string, args: string[] = []): Promise<Served> {
  const started = performance.now();
  const child = spawn(
    "./zimchat",
    ["serve", "--port", "0", "--host", "127.0.0.1", "--registration", "open", "--rate-limits", "off", ...args],
    {
      cwd: dir,
      env: binaryEnv(home),
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const logs: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  createInterface({ input: child.stderr! }).on("line", (line) => logs.push(line));
  const { port, fingerprint } = await new Promise<{ port: number; fingerprint: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the binary did not start:\n${logs.join("\n")}`)), 60_000);
    let port = 0;
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(line);
      const entry = JSON.parse(line) as { msg?: string; port?: number; fingerprint?: string };
      if (entry.msg === "listening") port = entry.port!;
      if (entry.fingerprint && port) {
        clearTimeout(timer);
        resolve({ port, fingerprint: entry.fingerprint });
      }
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`the binary exited (${code ?? signal}):\n${logs.join("\n")}`)),
    );
  });
  return { child, url: `http://127.0.0.1:${port}`, fingerprint, logs, exited, startupMs: performance.now() - started };
}

async function stop(server: Served): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  server.child.kill("SIGTERM");
  return server.exited;
}

describe(
  "the single-file binary",
  { skip: postgresRun && "the binary embeds SQLite: it runs in the SQLite run of the suite only" },
  () => {
    const buildDir = mkdtempSync(join(tmpdir(), "zimchat-binary-build-"));
    const dir = mkdtempSync(join(tmpdir(), "zimchat-binary-run-"));
    const home = mkdtempSync(join(tmpdir(), "zimchat-binary-home-"));
    let server: Served | undefined;

    before(async () => {
      const started = performance.now();
      await run(process.execPath, [join(root, "scripts", "build-binary.mjs"), "--out", join(buildDir, "zimchat")], {
        cwd: root,
        maxBuffer: 16 << 20,
      });
      copyFileSync(join(buildDir, "zimchat"), join(dir, "zimchat"));
      rmSync(buildDir, { recursive: true, force: true });
      chmodSync(join(dir, "zimchat"), 0o755);
      // Reported, never asserted: build time and size belong in the report, not in a pass/fail.
      console.log(
        `# binary built in ${((performance.now() - started) / 1000).toFixed(1)} s, ${(statSync(join(dir, "zimchat")).size / 2 ** 20).toFixed(1)} MiB`,
      );
    });

    after(async () => {
      if (server && server.child.exitCode === null && server.child.signalCode === null) await stop(server);
      rmSync(dir, { recursive: true, force: true });
      rmSync(home, { recursive: true, force: true });
    });

    it("prints its version from an empty directory (its first run, which extracts the assets)", async () => {
      const started = performance.now();
      const { stdout } = await run("./zimchat", ["--version"], { cwd: dir, env: binaryEnv(home) });
      const { version } = JSON.parse(readFileSync(join(root, "server", "package.json"), "utf8")) as { version: string };
      assert.equal(stdout.trim(), version);
      console.log(`# first run (assets extracted): --version in ${(performance.now() - started).toFixed(0)} ms`);
    });

    it("serves a register/send/receive round trip on SQLite in ./data, with the native addons from its own cache", async () => {
      server = await serve(dir, home);
      console.log(`# serve: ${server.startupMs.toFixed(0)} ms to "listening"`);
      assert.ok(existsSync(join(dir, "data", "zimchat.db")), "the SQLite database is in ./data");

      // libsignal and better-sqlite3 are mapped from the extracted cache, never from the repository.
      const maps = readFileSync(`/proc/${server.child.pid}/maps`, "utf8");
      const addons = [
        ...new Set(
          maps
            .split("\n")
            .map((l) => l.split(/\s+/)[5] ?? "")
            .filter((p) => p.endsWith(".node")),
        ),
      ];
      const cache = join(home, "cache", "zimchat");
      assert.equal(addons.length, 2, addons.join(", "));
      for (const addon of addons) assert.ok(addon.startsWith(cache + "/"), `${addon} is loaded from the cache`);
      assert.ok(!maps.includes(root), "nothing is mapped from the repository");
      assert.equal(statSync(cache).mode & 0o777, 0o700);

      const alice = await ZimClient.register({
        serverUrl: server.url,
        username: "alice",
        store: new MemoryDeviceStore(),
        trustRootFingerprint: server.fingerprint,
      });
      const bob = await ZimClient.register({
        serverUrl: server.url,
        username: "bob",
        store: new MemoryDeviceStore(),
        trustRootFingerprint: server.fingerprint,
      });
      try {
        const received = new Promise<MessageEvent>((resolve) => bob.on("message", resolve));
        await bob.connect();
        await alice.sendText("bob", "hello from the binary");
        const message = await received;
        assert.equal(message.text, "hello from the binary");
        assert.equal(message.from, alice.local.uuid);
      } finally {
        await alice.close();
        await bob.close();
      }

      assert.deepEqual(await stop(server), { code: 0, signal: null });
    });

    it("starts again on the same data with the bundled moderation plugin and a third-party plugin from disk; `keys show` reads the same trust root", async () => {
      const first = server!.fingerprint;
      const plugins = join(home, "plugins");
      mkdirSync(plugins);
      // A plugin module on disk with no dependencies: the binary imports it through Node's own loader.
      writeFileSync(
        join(plugins, "greeter.mjs"),
        `export default {
  name: "greeter",
  configSchema: { safeParseAsync: async (value) => ({ success: true, data: value }) },
  setup(ctx, config) { return { start() { ctx.logger.info({ greeting: config.greeting }, "greeter started"); } }; },
};
`,
      );
      writeFileSync(
        join(plugins, "config.json"),
        JSON.stringify({
          plugins: [
            { use: "@zimchat/plugins/moderation", config: { reservedUsernames: ["mallory"] } },
            { use: "./greeter.mjs", config: { greeting: "hello" } },
          ],
        }),
      );
      server = await serve(dir, home, ["--config", join(plugins, "config.json")]);
      console.log(`# serve again: ${server.startupMs.toFixed(0)} ms to "listening"`);
      assert.equal(server.fingerprint, first);
      assert.ok(
        server.logs.some((l) => l.includes('"greeting":"hello"') && l.includes("greeter started")),
        server.logs.join("\n"),
      );
      assert.ok(!server.logs.some((l) => /Warning/.test(l)), server.logs.join("\n"));
      // The moderation plugin, carried inside the binary, refuses its reserved name and admits others.
      await assert.rejects(
        ZimClient.register({ serverUrl: server.url, username: "mallory", store: new MemoryDeviceStore() }),
        (error: Error) => error.name === "ApiError",
      );
      const carol = await ZimClient.register({
        serverUrl: server.url,
        username: "carol",
        store: new MemoryDeviceStore(),
      });
      await carol.close();
      assert.deepEqual(await stop(server), { code: 0, signal: null });

      const { stdout } = await run("./zimchat", ["keys", "show", "--json"], { cwd: dir, env: binaryEnv(home) });
      assert.equal((JSON.parse(stdout) as { fingerprint: string }).fingerprint, first);
    });
  },
);
