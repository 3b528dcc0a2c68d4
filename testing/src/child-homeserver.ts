/**
 * A real homeserver as a child process: `zimchat serve` on a fresh SQLite
 * file or a fresh schema of the PostgreSQL named by ZIMCHAT_TEST_DATABASE_URL.
 * For tests that must not load the server into their own process (client
 * tests: the client never imports the server), that kill and restart it, or
 * that drive it from another project.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import pg from "pg";

/** The `zimchat` command of the installed @zimchat/server (its entry is dist/src/index.js). */
export const zimchatBin = fileURLToPath(new URL("../../bin/zimchat.js", import.meta.resolve("@zimchat/server")));

/** A port free right now, so a restarted homeserver can come back on the same URL. */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** A running homeserver child process. */
export interface Homeserver {
  url: string;
  dataDir: string;
  databaseUrl: string;
  child: ChildProcess;
  /** Every line it logged. */
  logs: string[];
  /**
   * Kills it (SIGKILL) and starts it again on the same database; `whileStopped`
   * runs in between (tests that play a malicious operator edit its files there).
   */
  restart(whileStopped?: () => void | Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

/** A `zimchat serve` child process that printed its `listening` line. */
export interface ServeProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Every line it wrote to stdout and stderr (the array given, if one was). */
  logs: string[];
  /** Resolves with the exit code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `zimchat serve --port 0 --host 127.0.0.1 ...args` and resolves once
 * it listens; rejects with its output if it exits first or takes over 30 s.
 */
export async function spawnZimchatServe(
  args: string[],
  options: { env?: Record<string, string>; logs?: string[] } = {},
): Promise<ServeProcess> {
  const logs = options.logs ?? [];
  const child = spawn(process.execPath, [zimchatBin, "serve", "--port", "0", "--host", "127.0.0.1", ...args], {
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  createInterface({ input: child.stderr! }).on("line", (l) => logs.push(l));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`homeserver did not start:\n${logs.join("\n")}`)), 30_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(line);
      const match = /"port":(\d+).*"msg":"listening"/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`homeserver exited with ${code ?? signal}:\n${logs.join("\n")}`));
    });
  });
  return { child, url: `http://127.0.0.1:${port}`, logs, exited };
}

async function spawnServer(args: string[], logs: string[]): Promise<{ child: ChildProcess; url: string }> {
  const { child, url } = await spawnZimchatServe(args, { logs });
  return { child, url };
}

/** Starts a homeserver with open registration (extra `zimchat serve` flags in `args`). */
export async function startHomeserver(args: string[] = []): Promise<Homeserver> {
  const dataDir = mkdtempSync(join(tmpdir(), "zimchat-client-test-"));
  const base = process.env.ZIMCHAT_TEST_DATABASE_URL;
  const schema = `c_${randomBytes(6).toString("hex")}`;
  let databaseUrl = `file:${join(dataDir, "zimchat.db")}`;
  if (base?.startsWith("postgres")) {
    const url = new URL(base);
    url.searchParams.set("schema", schema);
    databaseUrl = url.toString();
  }
  const logs: string[] = [];
  const fullArgs = [
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
    ...args,
  ];
  let { child, url } = await spawnServer(fullArgs, logs);
  const server: Homeserver = {
    get url() {
      return url;
    },
    dataDir,
    databaseUrl,
    get child() {
      return child;
    },
    logs,
    async restart(whileStopped) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
      await whileStopped?.();
      ({ child, url } = await spawnServer(fullArgs, logs));
    },
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
      if (base?.startsWith("postgres")) {
        const client = new pg.Client({ connectionString: base });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await client.end();
      }
    },
  };
  return server;
}

/** Resolves on the next emission of `event`, or rejects after `timeoutMs`. */
export function next<T>(
  emitter: { once(event: string, listener: (value: T) => void): unknown },
  event: string,
  timeoutMs = 10_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    emitter.once(event, (value: T) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** A homeserver whose federation name is its own loopback address. */
export type FederatedHomeserver = Homeserver & { name: string };

/**
 * Starts a homeserver named after its own loopback address (`127.0.0.1:<port>`,
 * a fixed port so a restart keeps the name), federating openly with loopback
 * peers over plain HTTP (`--federation-insecure-peers on`: tests only).
 */
export async function federatedHomeserver(args: string[] = []): Promise<FederatedHomeserver> {
  const port = await freePort();
  const name = `127.0.0.1:${port}`;
  const server = await startHomeserver([
    "--port",
    String(port),
    "--server-name",
    name,
    "--federation",
    "open",
    "--federation-insecure-peers",
    "on",
    ...args,
  ]);
  if (new URL(server.url).host !== name) throw new Error(`homeserver listens on ${server.url}, not ${name}`);
  return Object.assign(server, { name });
}
