/**
 * One bench run: start the servers, register accounts, interleave relay and
 * homeserver rounds at each N, then measure idle memory on fresh processes.
 */
import { mkdir, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { registerAccounts, type BenchAccount } from "./accounts.js";
import { connectHomeserverPool, connectRelayPool, type DevicePool } from "./device-pool.js";
import { measureIdleMemory, type IdleMemoryResult } from "./idle-memory.js";
import { measureLatency, type LatencyRound } from "./latency.js";
import { windowFor, type BenchOptions } from "./options.js";
import { benchModulePath, startServer, type ServerProcess } from "./server-process.js";
import { createAccountKeys, createWhisperFixture } from "./signal-fixture.js";
import { waitUntil } from "./stats.js";
import { measureThroughput, type ThroughputRound } from "./throughput.js";

/** Rounds of one server at one N. */
export interface ServerRounds {
  throughput: ThroughputRound[];
  latency: LatencyRound[];
}

/** Everything measured at one N. */
export interface PhaseResult {
  n: number;
  window: number;
  relay: ServerRounds;
  homeserver: ServerRounds | undefined;
}

/** The raw result of a run. */
export interface BenchResult {
  options: BenchOptions;
  startedAt: string;
  elapsedS: number;
  payload: { relayBytes: number; whisperBytes: number; whisperBase64Chars: number; whisperPlaintextBytes: number };
  registration: { accounts: number; ms: number } | undefined;
  phases: PhaseResult[];
  idle: { relay: IdleMemoryResult; homeserver: IdleMemoryResult | undefined };
  /** Warn-or-worse log lines of the server children (the first few of each). */
  serverProblems: { name: string; count: number; first: string[] }[];
}

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const homeserverScript = fileURLToPath(new URL("../../../server/dist/src/cli/main.js", import.meta.url));

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
  const dataDir = `${tmpDir}/homeserver-data`;
  await mkdir(dataDir, { recursive: true });
  const servers: ServerProcess[] = [];
  const problems = new Map<string, { count: number; first: string[] }>();
  const stop = async (server: ServerProcess): Promise<void> => {
    await server.stop();
    servers.splice(servers.indexOf(server), 1);
    const seen = problems.get(server.name) ?? { count: 0, first: [] };
    seen.count += server.problemCount();
    seen.first.push(...server.problems.slice(0, 20 - seen.first.length));
    problems.set(server.name, seen);
  };
  const start = async (which: "relay" | "homeserver"): Promise<ServerProcess> => {
    const server = await startServer(
      which === "relay"
        ? { name: which, script: benchModulePath("relay-server.js"), args: ["--port", "0", "--host", "127.0.0.1"], cwd: repoRoot }
        : {
            name: which,
            script: homeserverScript,
            args: ["serve", "--port", "0", "--host", "127.0.0.1", "--data-dir", dataDir, "--registration", "open", "--rate-limits", "off", "--log-level", "warn"],
            cwd: repoRoot,
          },
    );
    servers.push(server);
    log(`${which} listening on ${server.url} (pid ${server.pid})`);
    return server;
  };

  try {
    const whisper = await createWhisperFixture(options.payloadBytes);
    const relayPayload = new Uint8Array(options.payloadBytes).fill(0xa5);
    log(`payloads: relay ${relayPayload.length} B binary; homeserver Whisper ${whisper.ciphertext.length} B (${whisper.plaintextBytes} B plaintext)`);

    let relay = await start("relay");
    let homeserver = options.relayOnly ? undefined : await start("homeserver");

    let accounts: BenchAccount[] = [];
    let registration: BenchResult["registration"];
    if (homeserver !== undefined) {
      const t = performance.now();
      accounts = await registerAccounts({
        baseUrl: homeserver.url,
        count: options.idleConnections,
        keys: createAccountKeys(),
        onProgress: (done) => log(`registered ${done}/${options.idleConnections} accounts`),
      });
      registration = { accounts: accounts.length, ms: performance.now() - t };
      log(`registered ${accounts.length} accounts in ${(registration.ms / 1000).toFixed(1)} s`);
    }

    const phases: PhaseResult[] = [];
    for (const n of options.ns) {
      const window = windowFor(options, n);
      log(`N = ${n}: connecting (window ${window} per device)`);
      const relayPool = await connectRelayPool({ url: relay.url, count: n }, relayPayload);
      const homePool = homeserver === undefined ? undefined : await connectHomeserverPool({ url: homeserver.url, count: n }, accounts, whisper.ciphertext);
      try {
        await probe(relayPool);
        if (homePool !== undefined) await probe(homePool);
        const phase: PhaseResult = {
          n,
          window,
          relay: { throughput: [], latency: [] },
          homeserver: homePool === undefined ? undefined : { throughput: [], latency: [] },
        };
        const throughputOptions = { window, warmupMs: options.warmupMs, durationMs: options.durationMs };
        for (let round = 1; round <= options.rounds; round++) {
          const a = await measureThroughput(relayPool, relay, throughputOptions);
          phase.relay.throughput.push(a);
          log(`N = ${n} throughput round ${round}: relay ${a.deliveredPerS.toFixed(0)} msgs/s${describeTrouble(a)}`);
          if (homePool !== undefined && homeserver !== undefined && phase.homeserver !== undefined) {
            const b = await measureThroughput(homePool, homeserver, throughputOptions);
            phase.homeserver.throughput.push(b);
            log(`N = ${n} throughput round ${round}: homeserver ${b.deliveredPerS.toFixed(0)} msgs/s${describeTrouble(b)}`);
          }
        }
        const latencyOptions = { rate: options.rate, durationMs: options.latencyDurationMs, warmupMs: options.warmupMs / 2 };
        for (let round = 1; round <= options.rounds; round++) {
          const a = await measureLatency(relayPool, latencyOptions);
          phase.relay.latency.push(a);
          log(`N = ${n} latency round ${round}: relay p50 ${a.p50Ms.toFixed(2)} p99 ${a.p99Ms.toFixed(2)} ms${describeTrouble(a)}`);
          if (homePool !== undefined && phase.homeserver !== undefined) {
            const b = await measureLatency(homePool, latencyOptions);
            phase.homeserver.latency.push(b);
            log(`N = ${n} latency round ${round}: homeserver p50 ${b.p50Ms.toFixed(2)} p99 ${b.p99Ms.toFixed(2)} ms${describeTrouble(b)}`);
          }
        }
        phases.push(phase);
      } finally {
        relayPool.close();
        homePool?.close();
      }
    }

    // Fresh processes, so heap growth from the load above is not in the baseline.
    await stop(relay);
    if (homeserver !== undefined) await stop(homeserver);
    log(`idle memory: ${options.idleConnections} relay connections`);
    relay = await start("relay");
    const relayIdle = await measureIdleMemory(relay, (count) => connectRelayPool({ url: relay.url, count }, relayPayload), {
      count: options.idleConnections,
    });
    await stop(relay);
    let homeIdle: IdleMemoryResult | undefined;
    if (!options.relayOnly) {
      log(`idle memory: ${options.idleConnections} homeserver devices`);
      const fresh = await start("homeserver");
      homeserver = fresh;
      homeIdle = await measureIdleMemory(
        fresh,
        (count) =>
          connectHomeserverPool(
            { url: fresh.url, count, onProgress: (done) => log(`connected ${done}/${count} devices`) },
            accounts,
            whisper.ciphertext,
          ),
        { count: options.idleConnections },
      );
      await stop(fresh);
    }

    return {
      options,
      startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
      elapsedS: (performance.now() - started) / 1000,
      payload: {
        relayBytes: relayPayload.length,
        whisperBytes: whisper.ciphertext.length,
        whisperBase64Chars: Buffer.from(whisper.ciphertext).toString("base64").length,
        whisperPlaintextBytes: whisper.plaintextBytes,
      },
      registration,
      phases,
      idle: { relay: relayIdle, homeserver: homeIdle },
      serverProblems: [...problems].map(([name, p]) => ({ name, count: p.count, first: p.first })),
    };
  } finally {
    for (const server of [...servers]) await stop(server);
    if (!options.keepTmp) await rm(tmpDir, { recursive: true, force: true });
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

function describeTrouble(round: { errors: number; firstError?: string; undrained?: number; lost?: number }): string {
  const parts: string[] = [];
  if (round.errors > 0) parts.push(`${round.errors} errors, first: ${round.firstError}`);
  if ((round.undrained ?? 0) > 0) parts.push(`${round.undrained} undrained`);
  if ((round.lost ?? 0) > 0) parts.push(`${round.lost} lost`);
  return parts.length === 0 ? "" : ` (${parts.join("; ")})`;
}
