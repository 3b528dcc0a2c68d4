/**
 * The cluster row: delivered msgs/s of three homeserver nodes sharing one
 * PostgreSQL and one Redis, next to one node on the same PostgreSQL without
 * Redis, and one node with the Redis adapter (its cost per message), in one
 * run with interleaved rounds. On a small machine the nodes share the cores,
 * so three nodes are not faster: the figure is the overhead.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { registerAccounts } from "./accounts.js";
import { benchDatabaseUrl } from "./options.js";
import { connectHomeserverPool, type DevicePool } from "./device-pool.js";
import { startServer, type ServerProcess } from "./server-process.js";
import { createAccountKeys, createWhisperFixture } from "@zimchat/testing/signal";
import { median } from "./stats.js";
import { measureThroughput } from "./throughput.js";

/** Where the cluster row runs. */
export interface ClusterBenchOptions {
  /** A PostgreSQL database; each setup gets a fresh schema in it, dropped afterwards. */
  databaseUrl: string;
  redisUrl: string;
  devices: number;
  window: number;
  rounds: number;
  warmupMs: number;
  durationMs: number;
}

/** One setup's rounds. */
export interface ClusterSetupResult {
  name: string;
  nodes: number;
  redis: boolean;
  deliveredPerS: number[];
  /** Server CPU (all nodes together) per delivered message, in microseconds. */
  serverCpuUsPerMsg: number[];
  errors: number;
}

/** The cluster row's figures. */
export interface ClusterBenchResult {
  devices: number;
  single: ClusterSetupResult;
  singleRedis: ClusterSetupResult;
  three: ClusterSetupResult;
  /** Median msgs/s of three nodes over one node without Redis. */
  threeNodeRatio: number;
  /** Median msgs/s of one node with the Redis adapter over one without. */
  redisRatio: number;
  /** Extra server CPU per message with the Redis adapter, in microseconds (medians). */
  redisCpuUsPerMsg: number;
}

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const homeserverScript = fileURLToPath(new URL("./cli/main.js", import.meta.resolve("@zimchat/server")));

/**
 * The PostgreSQL and Redis of the cluster row: `ZIMCHAT_BENCH_DATABASE_URL`
 * (or a PostgreSQL `DATABASE_URL`) and `ZIMCHAT_BENCH_REDIS_URL` (or
 * `REDIS_URL`), by default the local ones the build machines run.
 */
export function clusterBenchOptions(quick: boolean, env: NodeJS.ProcessEnv = process.env): ClusterBenchOptions {
  return {
    databaseUrl: benchDatabaseUrl(env),
    redisUrl: env.ZIMCHAT_BENCH_REDIS_URL || env.REDIS_URL || "redis://127.0.0.1:6379",
    devices: quick ? 30 : 90,
    window: quick ? 8 : 16,
    rounds: quick ? 2 : 3,
    warmupMs: quick ? 500 : 1000,
    durationMs: quick ? 1500 : 4000,
  };
}

/** A running setup: its nodes, their devices, and its rounds. */
interface Setup {
  result: ClusterSetupResult;
  nodes: ServerProcess[];
  pool: DevicePool;
}

/** Runs the three setups with interleaved rounds; servers, schemas and Redis keys are removed whatever happens. */
export async function runClusterBench(
  options: ClusterBenchOptions,
  log: (line: string) => void,
): Promise<ClusterBenchResult> {
  const runId = `bench_${process.pid}_${randomBytes(3).toString("hex")}`;
  const tmpDir = `${repoRoot}.bench-tmp/cluster-${runId}`;
  const schemas: string[] = [];
  const setups: Setup[] = [];
  const whisper = await createWhisperFixture(256);
  const keys = createAccountKeys();
  try {
    for (const [name, nodeCount, redis] of [
      ["1 node", 1, false],
      ["1 node + Redis", 1, true],
      ["3 nodes + Redis", 3, true],
    ] as const) {
      const schema = `${runId}_${setups.length}`;
      schemas.push(schema);
      const url = schemaUrl(options.databaseUrl, schema);
      const dataDir = `${tmpDir}/${setups.length}`;
      mkdirSync(dataDir, { recursive: true });
      const args = [
        "serve",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--data-dir",
        dataDir,
        "--database-url",
        url.toString(),
        "--registration",
        "open",
        "--rate-limits",
        "off",
        "--log-level",
        "info",
      ];
      if (redis) args.push("--redis-url", options.redisUrl, "--redis-prefix", schema);
      // The first node applies the migrations; the others start on the migrated schema.
      const nodes = [await startServer({ name, script: homeserverScript, args, cwd: repoRoot })];
      nodes.push(
        ...(await Promise.all(
          Array.from({ length: nodeCount - 1 }, () =>
            startServer({ name, script: homeserverScript, args, cwd: repoRoot }),
          ),
        )),
      );
      const setup: Setup = {
        result: { name, nodes: nodeCount, redis, deliveredPerS: [], serverCpuUsPerMsg: [], errors: 0 },
        nodes,
        pool: undefined as unknown as DevicePool,
      };
      setups.push(setup);
      // Few registrations at once: PostgreSQL pools are small, and a busy shared machine makes transactions wait.
      const accounts = await registerAccounts({ baseUrl: nodes[0]!.url, count: options.devices, keys, concurrency: 4 });
      setup.pool = await connectHomeserverPool(
        { url: nodes[0]!.url, spreadUrls: nodes.map((n) => n.url), count: options.devices },
        accounts,
        whisper.ciphertext,
      );
      log(`cluster: ${name} ready (${options.devices} devices)`);
    }
    // One unrecorded pass each, so the first recorded round is not the one that warms the JIT and the pools.
    for (const { nodes, pool } of setups)
      await measureThroughput(pool, allNodes(nodes), {
        window: options.window,
        warmupMs: 0,
        durationMs: options.warmupMs * 2,
      });
    for (let round = 1; round <= options.rounds; round++) {
      for (const { result, nodes, pool } of setups) {
        const r = await measureThroughput(pool, allNodes(nodes), {
          window: options.window,
          warmupMs: options.warmupMs,
          durationMs: options.durationMs,
        });
        result.deliveredPerS.push(r.deliveredPerS);
        result.serverCpuUsPerMsg.push(r.serverCpuUsPerMsg);
        result.errors += r.errors + r.undrained;
        log(
          `cluster round ${round}: ${result.name} ${r.deliveredPerS.toFixed(0)} msgs/s, ${r.serverCpuUsPerMsg.toFixed(0)} us server CPU/msg${r.errors ? `, ${r.errors} errors, first: ${r.firstError}` : ""}`,
        );
      }
    }
  } finally {
    for (const s of setups) {
      s.pool?.close();
      for (const node of s.nodes) await node.stop();
    }
    await dropSchemas(options.databaseUrl, schemas);
    rmSync(tmpDir, { recursive: true, force: true });
  }
  const [single, singleRedis, three] = setups.map((s) => s.result) as [
    ClusterSetupResult,
    ClusterSetupResult,
    ClusterSetupResult,
  ];
  return {
    devices: options.devices,
    single,
    singleRedis,
    three,
    threeNodeRatio: median(three.deliveredPerS) / median(single.deliveredPerS),
    redisRatio: median(singleRedis.deliveredPerS) / median(single.deliveredPerS),
    redisCpuUsPerMsg: median(singleRedis.serverCpuUsPerMsg) - median(single.serverCpuUsPerMsg),
  };
}

/** The nodes of a setup as one server for CPU accounting: their CPU times add up. */
function allNodes(nodes: ServerProcess[]): ServerProcess {
  const first = nodes[0]!;
  return { ...first, cpuMs: async () => (await Promise.all(nodes.map((n) => n.cpuMs()))).reduce((a, b) => a + b, 0) };
}

/** `databaseUrl` with its `schema` parameter set: the homeserver creates and migrates that schema. */
export function schemaUrl(databaseUrl: string, schema: string): URL {
  const url = new URL(databaseUrl);
  url.searchParams.set("schema", schema);
  return url;
}

/** Drops the bench's schemas (and everything in them). */
export async function dropSchemas(databaseUrl: string, schemas: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** The report section for the cluster row. */
export function formatClusterBench(r: ClusterBenchResult): string {
  const row = (s: ClusterSetupResult): string =>
    `  ${s.name.padEnd(20)} ${median(s.deliveredPerS).toFixed(0).padStart(7)} msgs/s   ${median(s.serverCpuUsPerMsg).toFixed(0).padStart(5)} us server CPU/msg   (rounds: ${s.deliveredPerS.map((x) => x.toFixed(0)).join(", ")})${s.errors ? `   ${s.errors} errors` : ""}`;
  return [
    `Cluster: delivered msgs/s on one PostgreSQL, ${r.devices} devices spread over the nodes, interleaved rounds, medians`,
    row(r.single),
    row(r.singleRedis),
    row(r.three),
    `  3 nodes / 1 node        ${r.threeNodeRatio.toFixed(2).padStart(7)}   (the three nodes share this machine's cores)`,
    `  Redis adapter cost      ${r.redisRatio.toFixed(2).padStart(7)} x msgs/s, ${r.redisCpuUsPerMsg >= 0 ? "+" : ""}${r.redisCpuUsPerMsg.toFixed(0)} us server CPU per message`,
  ].join("\n");
}
