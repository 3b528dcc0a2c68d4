/**
 * The published packages work outside this repository: `npm pack` of
 * @zimchat/protocol, @zimchat/client and @zimchat/plugin-sdk, then
 * `npm ci --offline` of those tarballs into an empty project in a temporary
 * directory (their dependencies come from the npm cache this repository's
 * `npm ci` filled, at the versions its lockfile pins), then a bot and a
 * client written as a developer would,
 * importing only the installed packages, exchange real end-to-end encrypted
 * messages through a homeserver started from this repository. The project's
 * TypeScript view of the packages (their `exports` types) is compiled too.
 *
 * better-sqlite3's install takes its native addon from a local prebuild made
 * of this repository's own build (prebuild-install's local mirror, as an
 * offline organisation would provide), so the test does not spend minutes
 * compiling SQLite; without one it compiles it, as it would for a user.
 * It runs in the SQLite pass of the suite only.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startHomeserver, type Homeserver } from "../src/spawn.js";
import { offlineLockfile, type Lockfile, type PackedPackage } from "./support/offline-lockfile.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const minutes = 60_000;
const published = ["@zimchat/protocol", "@zimchat/client", "@zimchat/plugin-sdk"];
/** The built page of `zimchat-chat web`, which @zimchat/client ships (its `prepack` builds it). */
const webUi = ["dist/web/index.html", "dist/web/app.js", "dist/web/app.css"];

/**
 * This process's environment without what an enclosing `npm run` set for this repository (its workspace, package,
 * lifecycle).
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const keep = new Set([
    "npm_config_cache",
    "npm_config_userconfig",
    "npm_config_nodedir",
    "npm_config_cafile",
    "npm_config_registry",
  ]);
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_") || keep.has(k.toLowerCase())),
  );
}

function run(
  command: string,
  args: string[],
  cwd: string,
  timeoutMs: number,
  env: Record<string, string> = {},
): string {
  const result = spawnSync(command, args, {
    cwd,
    env: { ...cleanEnv(), ...env },
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0)
    throw new Error(
      `${command} ${args.join(" ")} failed (${result.error?.message ?? `exit ${result.status}`}):\n${result.stdout}\n${result.stderr}`,
    );
  return result.stdout;
}

/** Starts `node <script>` in the project and resolves with its first stdout line that parses as JSON. */
function startScript(
  cwd: string,
  script: string,
  env: Record<string, string>,
  logs: string[],
): { child: ChildProcess; first: Promise<Record<string, unknown>> } {
  const child = spawn(process.execPath, [script], {
    cwd,
    env: { ...cleanEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  createInterface({ input: child.stderr! }).on("line", (line) => logs.push(`${script} stderr: ${line}`));
  const first = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${script} printed no result within 60 s:\n${logs.join("\n")}`)),
      60_000,
    );
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(`${script}: ${line}`);
      if (!line.startsWith("{")) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as Record<string, unknown>);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with ${code}:\n${logs.join("\n")}`));
    });
  });
  first.catch(() => {});
  return { child, first };
}

/**
 * The environment that points better-sqlite3's prebuild-install at a prebuild
 * of this repository's compiled addon (same version, same Node ABI), or
 * nothing when there is none (it then compiles from source).
 */
function localBetterSqlitePrebuild(dir: string): Record<string, string> {
  const pkg = join(root, "node_modules/better-sqlite3");
  const addon = "build/Release/better_sqlite3.node";
  if (!existsSync(join(pkg, addon)) || process.platform !== "linux") return {};
  const { version } = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as { version: string };
  mkdirSync(dir, { recursive: true });
  // prebuild-install's file name: {name}-v{version}-{runtime}-v{abi}-{platform}{libc}-{arch}.tar.gz (glibc: no libc
  // part).
  run(
    "tar",
    [
      "-czf",
      join(dir, `better-sqlite3-v${version}-node-v${process.versions.modules}-linux-${process.arch}.tar.gz`),
      "-C",
      pkg,
      addon,
    ],
    pkg,
    minutes,
  );
  return { npm_config_better_sqlite3_local_prebuilds: dir };
}

// What a bot author writes: an ESM script that imports the installed SDK only.
const botScript = `
import { Bot } from "@zimchat/plugin-sdk/bot";
const bot = new Bot({ server: process.env.SERVER, dir: process.env.BOT_DIR, username: "outsidebot", logger: false });
bot.on("message", (ctx) => ctx.reply("echo: " + ctx.message.text));
await bot.start();
console.log(JSON.stringify({ ready: true, username: bot.username, sdk: import.meta.resolve("@zimchat/plugin-sdk/bot") }));
process.on("SIGTERM", () => void bot.stop().then(() => process.exit(0)));
`;

// What an app developer writes: register a device, send, wait for the answer.
const clientScript = `
import { SqliteDeviceStore, ZimClient } from "@zimchat/client";
import { limits } from "@zimchat/protocol";
const client = await ZimClient.register({ serverUrl: process.env.SERVER, username: "outsider", store: new SqliteDeviceStore(process.env.STORE) });
const reply = new Promise((resolve) => client.on("message", (m) => { if (!m.outgoing) resolve(m); }));
await client.connect();
await client.sendText(process.env.BOT, process.env.TEXT);
const m = await reply;
console.log(JSON.stringify({ text: m.text, limits: typeof limits, sdk: import.meta.resolve("@zimchat/client") }));
await client.close();
`;

// The same, type-checked against the installed packages' declarations.
const typedConsumer = `
import { MemoryDeviceStore, ZimClient, type MessageEvent } from "@zimchat/client";
import { Bot, type BotOptions } from "@zimchat/plugin-sdk/bot";
import { definePlugin } from "@zimchat/plugin-sdk/server";
import { registerRequestSchema } from "@zimchat/protocol";
import { z } from "zod";

export function makeBot(options: BotOptions): Bot {
  const bot = new Bot({ username: "typedbot", ...options });
  bot.on("message", (ctx) => ctx.reply(ctx.message.text));
  return bot;
}
export async function device(serverUrl: string): Promise<ZimClient> {
  return ZimClient.register({ serverUrl, username: "typed", store: new MemoryDeviceStore() });
}
export const text = (m: MessageEvent): string => m.text;
export const plugin = definePlugin({ name: "typed-plugin", configSchema: z.object({}), setup: () => ({}) });
export const valid = registerRequestSchema.safeParse({}).success;
`;

const postgresPass = process.env.ZIMCHAT_TEST_DATABASE_URL?.startsWith("postgres") === true;

describe(
  "the packed packages, installed outside the repository",
  { skip: postgresPass ? "runs in the SQLite pass" : false, timeout: 30 * minutes },
  () => {
    const work = mkdtempSync(join(tmpdir(), "zimchat-outside-"));
    const app = join(work, "app");
    const logs: string[] = [];
    const children: ChildProcess[] = [];
    let server: Homeserver | undefined;
    let packs: { name: string; filename: string; files: { path: string }[] }[] = [];

    before(
      async () => {
        mkdirSync(join(app, "packs"), { recursive: true });
        packs = JSON.parse(
          run(
            "npm",
            ["pack", ...published.flatMap((p) => ["-w", p]), "--pack-destination", join(app, "packs"), "--json"],
            root,
            5 * minutes,
          ),
        ) as typeof packs;
        const repoLock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as Lockfile;
        const packed: PackedPackage[] = packs.map((p) => {
          const tarball = join(app, "packs", p.filename);
          return {
            manifest: JSON.parse(
              run("tar", ["-xzOf", tarball, "package/package.json"], app, minutes),
            ) as PackedPackage["manifest"],
            resolved: `file:packs/${p.filename}`,
            integrity: `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`,
          };
        });
        const lock = offlineLockfile("zimchat-outside", repoLock, packed);
        writeFileSync(
          join(app, "package.json"),
          JSON.stringify(
            { name: "zimchat-outside", private: true, type: "module", dependencies: lock.packages[""]!.dependencies },
            null,
            2,
          ),
        );
        writeFileSync(join(app, "package-lock.json"), JSON.stringify(lock, null, 2));
        run(
          "npm",
          ["ci", "--offline", "--no-audit", "--no-fund"],
          app,
          20 * minutes,
          localBetterSqlitePrebuild(join(work, "prebuilds")),
        );
        writeFileSync(join(app, "bot.mjs"), botScript);
        writeFileSync(join(app, "client.mjs"), clientScript);
        server = await startHomeserver();
      },
      { timeout: 30 * minutes },
    );

    after(async () => {
      for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
      await server?.stop();
      rmSync(work, { recursive: true, force: true });
    });

    it("packs only compiled code and declarations (and the web client's built page), with versioned dependencies on each other", () => {
      assert.deepEqual(packs.map((p) => p.name).sort(), [...published].sort());
      for (const p of packs) {
        const paths = p.files.map((f) => f.path);
        assert.ok(paths.includes("package.json"), p.name);
        assert.ok(
          paths.every(
            (f) =>
              f === "package.json" ||
              f === "README.md" ||
              f === "LICENSE" ||
              f.startsWith("bin/") ||
              /^dist\/src\/.*\.(js|d\.ts)$/.test(f) ||
              (p.name === "@zimchat/client" && webUi.includes(f)),
          ),
          `${p.name} packs only dist/src (no sources, tests, maps or build info): ${paths.filter((f) => !f.startsWith("dist/src/")).join(", ")}`,
        );
        // zimchat-chat web serves its page from the package itself.
        if (p.name === "@zimchat/client")
          for (const file of webUi) assert.ok(paths.includes(file), `@zimchat/client packs ${file}`);
        assert.ok(
          paths.some((f) => f.endsWith(".d.ts")),
          `${p.name} ships declarations`,
        );
        const manifest = JSON.parse(
          run("tar", ["-xzOf", join(app, "packs", p.filename), "package/package.json"], app, minutes),
        ) as {
          dependencies?: Record<string, string>;
          engines?: { node?: string };
          license?: string;
        };
        assert.equal(manifest.license, "AGPL-3.0-only");
        assert.match(manifest.engines?.node ?? "", /20\.19/);
        for (const [dep, range] of Object.entries(manifest.dependencies ?? {})) {
          assert.ok(dep !== "@zimchat/server", `${p.name} does not depend on the server`);
          if (dep.startsWith("@zimchat/")) assert.match(range, /^\^\d+\.\d+\.\d+$/, `${p.name} -> ${dep}`);
        }
      }
    });

    it("a bot and a client importing only the installed packages exchange an end-to-end encrypted message", async () => {
      const bot = startScript(app, "bot.mjs", { SERVER: server!.url, BOT_DIR: join(work, "bot") }, logs);
      children.push(bot.child);
      const ready = await bot.first;
      assert.equal(ready.username, "outsidebot");
      assert.ok(
        realpathSync(fileURLToPath(String(ready.sdk))).startsWith(realpathSync(app)),
        `the bot's SDK is the installed one: ${String(ready.sdk)}`,
      );

      const text = `hello from outside ${process.pid}`;
      const client = startScript(
        app,
        "client.mjs",
        { SERVER: server!.url, STORE: join(work, "outsider.db"), BOT: "outsidebot", TEXT: text },
        logs,
      );
      children.push(client.child);
      const result = await client.first;
      assert.equal(
        result.text,
        `echo: ${text}`,
        "the installed bot decrypted the message and its encrypted answer came back",
      );
      assert.equal(result.limits, "object", "@zimchat/protocol imports");
      assert.ok(
        realpathSync(fileURLToPath(String(result.sdk))).startsWith(realpathSync(app)),
        `the client SDK is the installed one: ${String(result.sdk)}`,
      );
      const exited = await new Promise<number | null>((resolve) =>
        client.child.exitCode !== null ? resolve(client.child.exitCode) : client.child.once("exit", resolve),
      );
      assert.equal(exited, 0, logs.join("\n"));
      // The homeserver relayed ciphertext only: the text is in none of its log lines.
      assert.ok(!server!.logs.some((line) => line.includes(text)));
    });

    it("the installed zimchat-chat command runs", () => {
      const help = run(join(app, "node_modules/.bin/zimchat-chat"), ["--help"], app, minutes);
      assert.match(help, /Usage: zimchat-chat/);
      const web = run(join(app, "node_modules/.bin/zimchat-chat"), ["web", "--help"], app, minutes);
      assert.match(web, /Usage: zimchat-chat web/);
    });

    it("the installed zimchat-chat web serves the built page from the package, not the build-it placeholder", async () => {
      const web = spawn(
        join(app, "node_modules/.bin/zimchat-chat"),
        ["web", "--json", "--profile", join(work, "web-profile")],
        { cwd: app, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] },
      );
      children.push(web);
      const ready = await new Promise<{ port: number }>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`zimchat-chat web printed no webReady: ${logs.join("\n")}`)),
          minutes,
        );
        web.stderr.on("data", (chunk: Buffer) => logs.push(chunk.toString("utf8")));
        createInterface({ input: web.stdout }).on("line", (line) => {
          logs.push(line);
          if (!line.includes('"webReady"')) return;
          clearTimeout(timer);
          resolve(JSON.parse(line) as { port: number });
        });
      });
      const page = await fetch(`http://127.0.0.1:${ready.port}/`);
      const html = await page.text();
      assert.equal(page.status, 200);
      assert.match(html, /<script type="module" src="\/?app\.js"/, html);
      assert.doesNotMatch(html, /has not been built/);
      const script = await fetch(`http://127.0.0.1:${ready.port}/app.js`);
      assert.equal(script.status, 200);
      assert.match(script.headers.get("content-type") ?? "", /javascript/);
      web.kill("SIGTERM");
      const code = await new Promise<number | null>((resolve) =>
        web.exitCode !== null ? resolve(web.exitCode) : web.once("exit", resolve),
      );
      assert.equal(code, 0, logs.join("\n"));
    });

    it("a TypeScript project compiles against the installed packages' declarations", () => {
      writeFileSync(join(app, "consumer.ts"), typedConsumer);
      writeFileSync(
        join(app, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            module: "NodeNext",
            moduleResolution: "NodeNext",
            target: "ES2022",
            strict: true,
            noEmit: true,
            skipLibCheck: true,
            types: ["node"],
            typeRoots: [join(root, "node_modules/@types")],
          },
          files: ["consumer.ts"],
        }),
      );
      run(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], app, 5 * minutes);
    });
  },
);
