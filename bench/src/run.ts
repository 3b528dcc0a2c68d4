/**
 * One bench run: start the servers, register accounts, interleave relay and
 * homeserver rounds at each N, then measure idle memory on fresh processes.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { registerAccounts, type BenchAccount } from "./accounts.js";
import { dropSchemas, schemaUrl } from "./cluster.js";
import { waitForQuiet, type CpuShare } from "./cpu-usage.js";
import { connectHomeserverPool, connectRelayPool, type DevicePool } from "./device-pool.js";
import { measureDiskFloor, type DiskFloor } from "./disk-floor.js";
import { measureIdleMemory, type IdleMemoryResult } from "./idle-memory.js";
import { measureLatency, type LatencyRound } from "./latency.js";
import { windowFor, type BenchOptions } from "./options.js";
import { benchModulePath, startServer, type ServerProcess } from "./server-process.js";
import { createAccountKeys, createWhisperFixture } from "@zimchat/testing/signal";
import { waitUntil } from "./stats.js";
import { measureThroughput, type ThroughputRound } from "./throughput.js";

/** Rounds of one server at one N. */
export interface ServerRounds {
  throughput: ThroughputRound[];
  latency: LatencyRound[];
  /** SQLite homeserver only: one disk-floor measurement right before each latency round. */
  diskFloor?: DiskFloor[];
}

/** Everything measured at one N. */
export interface PhaseResult {
  n: number;
  window: number;
  relay: ServerRounds;
  homeserver: ServerRounds | undefined;
}

/** The CPU profile files of the homeserver during one N's rounds (with `--profile`). */
export interface PhaseProfile {
  n: number;
  /** The main thread's file first, then one per worker thread. */
  files: string[];
}

/** The raw result of a run. */
export interface BenchResult {
  options: BenchOptions;
  /** The homeserver's database, and where (PostgreSQL: the URL without credentials, and the run's schema). */
  database: { kind: BenchOptions["database"]; where: string };
  profiles: PhaseProfile[];
  startedAt: string;
  elapsedS: number;
  payload: { relayBytes: number; whisperBytes: number; whisperBase64Chars: number; whisperPlaintextBytes: number };
  registration: { accounts: number; ms: number } | undefined;
  /** Waits for other processes to go quiet before rounds. */
  quietWaits: { count: number; totalMs: number; stillNoisy: number };
  phases: PhaseResult[];
  idle: { relay: IdleMemoryResult; homeserver: IdleMemoryResult | undefined };
  /** Warn-or-worse log lines of the server children (the first few of each). */
  serverProblems: { name: string; count: number; first: string[] }[];
}

type ServerKind = "relay" | "homeserver";

/** One server and its connected devices during a phase. */
interface Contender {
  kind: ServerKind;
  server: ServerProcess;
  pool: DevicePool;
  rounds: ServerRounds;
}

/** Other processes' CPU, in percent of one core, below which the machine counts as quiet. */
const quietThresholdPercent = 25;

/**
 * The server logs its `listening` line at info level, so warn would hide it;
 * at info it logs nothing per request (request logs are debug), only start-up,
 * shutdown and expiry sweeps.
 */
const homeserverLogLevel = "info";
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const homeserverScript = fileURLToPath(new URL("./cli/main.js", import.meta.resolve("@zimchat/server")));

/** Progress goes to stderr so stdout holds only the report. */
export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Runs the whole bench; servers and temporary files are cleaned up whatever happens. */
export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const started = performance.now();
  if (!options.relayOnly && !existsSync(homeserverScript)) {
    throw new Error(`${homeserverScript} does not exist: run \`npm run build\` first (or pass --relay-only)`);
  }
  const tmpDir = `${repoRoot}.bench-tmp/run-${process.pid}-${Date.now()}`;
  // PostgreSQL: a fresh schema for this run (the homeserver migrates it at start), dropped at the end.
  const schema =
    options.database === "postgresql" ? `bench_${process.pid}_${randomBytes(3).toString("hex")}_main` : undefined;
  const databaseUrl = schema === undefined ? undefined : schemaUrl(options.databaseUrl, schema).toString();
  const fleet = new Fleet(`${tmpDir}/homeserver-data`, databaseUrl);
  await mkdir(`${tmpDir}/homeserver-data`, { recursive: true });
  const profileDir = !options.profile
    ? undefined
    : resolve(repoRoot, options.profileDir ?? `.bench-tmp/profile-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  if (profileDir !== undefined) await mkdir(profileDir, { recursive: true });
  const profiles: PhaseProfile[] = [];
  try {
    const whisper = await createWhisperFixture(options.payloadBytes);
    const relayPayload = new Uint8Array(options.payloadBytes).fill(0xa5);
    log(
      `payloads: relay ${relayPayload.length} B binary; homeserver Whisper ${whisper.ciphertext.length} B (${whisper.plaintextBytes} B plaintext)`,
    );

    const relay = await fleet.start("relay");
    const homeserver = options.relayOnly ? undefined : await fleet.start("homeserver");
    let accounts: BenchAccount[] = [];
    let registration: BenchResult["registration"];
    if (homeserver !== undefined) {
      const t = performance.now();
      accounts = await registerAccounts({
        baseUrl: homeserver.url,
        count: options.idleConnections,
        keys: createAccountKeys(),
        // PostgreSQL pools are small; too many registrations at once only queue for a connection.
        ...(databaseUrl === undefined ? {} : { concurrency: 8 }),
        onProgress: (done) => log(`registered ${done}/${options.idleConnections} accounts`),
      });
      registration = { accounts: accounts.length, ms: performance.now() - t };
      log(`registered ${accounts.length} accounts in ${(registration.ms / 1000).toFixed(1)} s`);
    }
    const connect = (kind: ServerKind, server: ServerProcess, count: number): Promise<DevicePool> =>
      kind === "relay"
        ? connectRelayPool({ url: server.url, count }, relayPayload)
        : connectHomeserverPool(
            { url: server.url, count, onProgress: (done) => log(`connected ${done}/${count} devices`) },
            accounts,
            whisper.ciphertext,
          );

    const quiet = new QuietKeeper(options, fleet);
    const phases: PhaseResult[] = [];
    for (const n of options.ns) {
      const window = windowFor(options, n);
      log(`N = ${n}: connecting (window ${window} per device)`);
      const contenders: Contender[] = [];
      try {
        for (const server of homeserver === undefined ? [relay] : [relay, homeserver]) {
          const kind = server === relay ? "relay" : "homeserver";
          contenders.push({
            kind,
            server,
            pool: await connect(kind, server, n),
            rounds: { throughput: [], latency: [] },
          });
        }
        for (const c of contenders) await probe(c.pool);
        const profiled = profileDir === undefined ? undefined : contenders.find((c) => c.kind === "homeserver");
        if (profiled !== undefined) await profiled.server.startProfile(`${profileDir}/homeserver-n${n}.cpuprofile`);
        await runPhase(n, window, contenders, options, quiet, databaseUrl === undefined ? fleet.dataDir : undefined);
        if (profiled !== undefined) {
          const files = await profiled.server.stopProfile();
          profiles.push({ n, files });
          log(`N = ${n}: homeserver CPU profile: ${files.join(", ") || "none written"}`);
        }
      } finally {
        for (const c of contenders) c.pool.close();
      }
      phases.push({
        n,
        window,
        relay: contenders[0]!.rounds,
        homeserver: contenders[1]?.rounds,
      });
    }

    // Fresh processes, so heap growth from the load above is not in the baseline.
    for (const server of [...fleet.running]) await fleet.stop(server);
    const idle = async (kind: ServerKind): Promise<IdleMemoryResult> => {
      log(`idle memory: ${options.idleConnections} ${kind} connections`);
      const server = await fleet.start(kind);
      const result = await measureIdleMemory(server, (count) => connect(kind, server, count), {
        count: options.idleConnections,
      });
      await fleet.stop(server);
      return result;
    };
    const relayIdle = await idle("relay");
    const homeIdle = options.relayOnly ? undefined : await idle("homeserver");

    return {
      options,
      database: { kind: options.database, where: describeDatabase(databaseUrl, tmpDir) },
      profiles,
      startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
      elapsedS: (performance.now() - started) / 1000,
      payload: {
        relayBytes: relayPayload.length,
        whisperBytes: whisper.ciphertext.length,
        whisperBase64Chars: Buffer.from(whisper.ciphertext).toString("base64").length,
        whisperPlaintextBytes: whisper.plaintextBytes,
      },
      registration,
      quietWaits: quiet.waits,
      phases,
      idle: { relay: relayIdle, homeserver: homeIdle },
      serverProblems: fleet.problems(),
    };
  } finally {
    for (const server of [...fleet.running]) await fleet.stop(server);
    if (!options.keepTmp) {
      await rm(tmpDir, { recursive: true, force: true });
      if (schema !== undefined) await dropSchemas(options.databaseUrl, [schema]);
    }
  }
}

/** Where the homeserver's data was, without a password. */
function describeDatabase(databaseUrl: string | undefined, tmpDir: string): string {
  if (databaseUrl === undefined) return `SQLite in ${tmpDir}/homeserver-data`;
  const url = new URL(databaseUrl);
  url.password = "";
  return url.toString();
}

/** Throughput rounds, then latency rounds, each alternating relay and homeserver (A B A B). */
async function runPhase(
  n: number,
  window: number,
  contenders: Contender[],
  options: BenchOptions,
  quiet: QuietKeeper,
  /** The SQLite homeserver's data directory, where the disk floor is measured (undefined on PostgreSQL). */
  diskFloorDir: string | undefined,
): Promise<void> {
  for (let round = 1; round <= options.rounds; round++) {
    for (const c of contenders) {
      await quiet.settle();
      const r = await measureThroughput(c.pool, c.server, {
        window,
        warmupMs: options.warmupMs,
        durationMs: options.durationMs,
      });
      c.rounds.throughput.push(r);
      log(`N = ${n} throughput round ${round}: ${c.kind} ${r.deliveredPerS.toFixed(0)} msgs/s${describeRound(r)}`);
    }
  }
  for (let round = 1; round <= options.rounds; round++) {
    for (const c of contenders) {
      await quiet.settle();
      if (c.kind === "homeserver" && diskFloorDir !== undefined) {
        const floor = measureDiskFloor(diskFloorDir);
        (c.rounds.diskFloor ??= []).push(floor);
        log(
          `N = ${n} disk floor before latency round ${round}: one SQLite commit p50 ${floor.p50Ms.toFixed(2)} p99 ${floor.p99Ms.toFixed(2)} ms`,
        );
      }
      const r = await measureLatency(c.pool, c.server, {
        rate: options.rate,
        durationMs: options.latencyDurationMs,
        warmupMs: options.warmupMs / 2,
      });
      c.rounds.latency.push(r);
      log(
        `N = ${n} latency round ${round}: ${c.kind} p50 ${r.p50Ms.toFixed(2)} p99 ${r.p99Ms.toFixed(2)} ms${describeRound(r)}`,
      );
    }
  }
}

/** The server children of a run, and what they logged. */
class Fleet {
  readonly running: ServerProcess[] = [];
  private readonly logged = new Map<string, { count: number; first: string[] }>();

  constructor(
    readonly dataDir: string,
    /** PostgreSQL (with the run's schema); undefined: SQLite in the data directory. */
    private readonly databaseUrl: string | undefined,
  ) {}

  async start(kind: ServerKind): Promise<ServerProcess> {
    const server = await startServer(
      kind === "relay"
        ? {
            name: kind,
            script: benchModulePath("relay-server.js"),
            args: ["--port", "0", "--host", "127.0.0.1"],
            cwd: repoRoot,
          }
        : {
            name: kind,
            script: homeserverScript,
            args: [
              "serve",
              "--port",
              "0",
              "--host",
              "127.0.0.1",
              "--data-dir",
              this.dataDir,
              "--registration",
              "open",
              "--rate-limits",
              "off",
              "--log-level",
              homeserverLogLevel,
              ...(this.databaseUrl === undefined ? [] : ["--database-url", this.databaseUrl]),
            ],
            cwd: repoRoot,
          },
    );
    this.running.push(server);
    log(`${kind} listening on ${server.url} (pid ${server.pid})`);
    return server;
  }

  async stop(server: ServerProcess): Promise<void> {
    await server.stop();
    this.running.splice(this.running.indexOf(server), 1);
    const seen = this.logged.get(server.name) ?? { count: 0, first: [] };
    seen.count += server.problemCount();
    seen.first.push(...server.problems.slice(0, 20 - seen.first.length));
    this.logged.set(server.name, seen);
  }

  problems(): BenchResult["serverProblems"] {
    return [...this.logged].map(([name, p]) => ({ name, count: p.count, first: p.first }));
  }
}

/** Waits, before each round, for other processes on the machine to go quiet, within a budget. */
class QuietKeeper {
  readonly waits = { count: 0, totalMs: 0, stillNoisy: 0 };

  constructor(
    private readonly options: BenchOptions,
    private readonly fleet: Fleet,
  ) {}

  async settle(): Promise<void> {
    const budget = Math.min(this.options.quietWaitMs, this.options.quietBudgetMs - this.waits.totalMs);
    if (budget <= 0) return;
    const wait = await waitForQuiet(this.fleet.running, quietThresholdPercent, budget);
    if (wait.waitedMs < 1_000) return;
    this.waits.count += 1;
    this.waits.totalMs += wait.waitedMs;
    if (wait.foreignPercent >= quietThresholdPercent) this.waits.stillNoisy += 1;
    log(
      `waited ${(wait.waitedMs / 1000).toFixed(1)} s for other processes to go quiet (now ${wait.foreignPercent.toFixed(0)}% of a core)`,
    );
  }
}

/**
 * One message from device 0 to device 1, delivered and acknowledged, before
 * any round: a server that cannot do this fails the run with its answer.
 */
async function probe(pool: DevicePool): Promise<void> {
  let delivered = false;
  let ackError: string | undefined;
  let acked = false;
  let sendError: string | undefined;
  pool.listen({
    delivered: () => {
      delivered = true;
    },
    acked: (_recipient, _count, error) => {
      acked = true;
      ackError = error;
    },
  });
  pool.send(0, 1 % pool.size, (outcome) => {
    if (!outcome.ok) sendError = outcome.error;
  });
  await waitUntil(() => (delivered && acked) || sendError !== undefined, 10_000);
  pool.listen(undefined);
  if (sendError !== undefined) throw new Error(`${pool.kind}: send refused: ${sendError}`);
  if (!delivered) throw new Error(`${pool.kind}: a sent message was not delivered within 10 s`);
  if (!acked) throw new Error(`${pool.kind}: an acknowledgement was not answered within 10 s`);
  if (ackError !== undefined) throw new Error(`${pool.kind}: ack refused: ${ackError}`);
}

function describeRound(round: {
  errors: number;
  firstError?: string;
  undrained?: number;
  lost?: number;
  cpu: CpuShare;
}): string {
  const parts = [`server CPU ${round.cpu.serverPercent.toFixed(0)}%, other ${round.cpu.foreignPercent.toFixed(0)}%`];
  if (round.errors > 0) parts.push(`${round.errors} errors, first: ${round.firstError}`);
  if ((round.undrained ?? 0) > 0) parts.push(`${round.undrained} undrained`);
  if ((round.lost ?? 0) > 0) parts.push(`${round.lost} lost`);
  return ` (${parts.join("; ")})`;
}
