/**
 * `npm run bench`: the bare Socket.IO relay baseline and the homeserver's real
 * delivery path, measured in one run. With `--json`, the last stdout line is
 * the summary object.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseBenchOptions } from "./options.js";
import {
  analyzeCpuProfiles,
  formatProfileBreakdown,
  type CpuProfile,
  type ProfileBreakdown,
} from "./profile-analysis.js";
import { formatReport, summarize } from "./report.js";
import { log, runBench } from "./run.js";
import { median } from "./stats.js";
import { formatClientPipeline, runClientPipeline, type ClientPipelineResult } from "./client-pipeline.js";
import { clusterBenchOptions, formatClusterBench, runClusterBench, type ClusterBenchResult } from "./cluster.js";
import { formatWalCheckpointBench, runWalCheckpointBench } from "./wal-checkpoints.js";

async function main(): Promise<void> {
  const options = parseBenchOptions(process.argv.slice(2));
  if (options.clientPipelineOnly) {
    const client = await runClientPipeline(options.quick, log, options.roundsGiven ? options.rounds : undefined);
    process.stdout.write(`${formatClientPipeline(client)}\n`);
    if (options.json) process.stdout.write(`${JSON.stringify(clientPipelineFigures(client))}\n`);
    return;
  }
  const result = await runBench(options);
  const summary = summarize(result);
  process.stdout.write(`${formatReport(summary)}\n`);
  const profiles = result.profiles.map((p) => ({ n: p.n, files: p.files, breakdown: analyzeProfiles(p.files) }));
  for (const p of profiles) {
    process.stdout.write(
      `\nHomeserver CPU profile at N = ${p.n} (throughput and latency rounds; ${p.files.length} thread(s))\n` +
        `  files: ${p.files.join(", ")}\n${p.breakdown === undefined ? "  (no samples)" : formatProfileBreakdown(p.breakdown)}\n`,
    );
  }
  const client = options.relayOnly ? undefined : await runClientPipeline(options.quick, log);
  if (client) process.stdout.write(`\n${formatClientPipeline(client)}\n`);
  const checkpoints = options.relayOnly ? undefined : await runWalCheckpointBench(options.quick, log);
  if (checkpoints) process.stdout.write(`\n${formatWalCheckpointBench(checkpoints)}\n`);
  let cluster: ClusterBenchResult | undefined;
  if (!options.relayOnly) {
    try {
      cluster = await runClusterBench(clusterBenchOptions(options.quick), log);
      process.stdout.write(`\n${formatClusterBench(cluster)}\n`);
    } catch (error) {
      // No PostgreSQL or Redis here: the other rows stand; say why this one is missing.
      process.stdout.write(
        `\nCluster: skipped (${error instanceof Error ? error.message.split("\n")[0] : String(error)}; set ZIMCHAT_BENCH_DATABASE_URL and ZIMCHAT_BENCH_REDIS_URL)\n`,
      );
    }
  }
  if (options.json) {
    const clientFigures = clientPipelineFigures(client);
    const clusterFigures = {
      cluster_1node_msgs_per_s: cluster ? median(cluster.single.deliveredPerS) : null,
      cluster_1node_redis_msgs_per_s: cluster ? median(cluster.singleRedis.deliveredPerS) : null,
      cluster_3node_msgs_per_s: cluster ? median(cluster.three.deliveredPerS) : null,
      cluster_3node_ratio: cluster?.threeNodeRatio ?? null,
      cluster_redis_ratio: cluster?.redisRatio ?? null,
      cluster_redis_cpu_us_per_msg: cluster?.redisCpuUsPerMsg ?? null,
    };
    const checkpointFigures = {
      wal_checkpoint_ratio: checkpoints?.ratio ?? null,
      wal_checkpoint_cpu_us_per_msg: checkpoints?.cpuUsPerMsg ?? null,
    };
    const profileFigures = {
      profiles: options.profile
        ? profiles.map((p) => ({
            n: p.n,
            files: p.files,
            busy_ms: p.breakdown === undefined ? null : Math.round(p.breakdown.busyMs),
            packages_percent: Object.fromEntries(
              (p.breakdown?.packages ?? []).map((k) => [k.package, Math.round(k.percent * 10) / 10]),
            ),
            top_functions: (p.breakdown?.functions ?? []).slice(0, 10).map((f) => ({
              function: f.functionName,
              package: f.package,
              location: f.location,
              percent: Math.round(f.percent * 10) / 10,
            })),
          }))
        : null,
    };
    process.stdout.write(
      `${JSON.stringify({ ...summary, ...profileFigures, ...clientFigures, ...clusterFigures, ...checkpointFigures })}\n`,
    );
  }
}

/** The client pipeline's figures in the JSON summary (null when it did not run). */
function clientPipelineFigures(client: ClientPipelineResult | undefined): Record<string, number | null> {
  return client
    ? {
        sdk_msgs_per_s: client.sdkMsgsPerSecond,
        raw_libsignal_msgs_per_s: client.rawMsgsPerSecond,
        client_pipeline_ratio: client.ratio,
      }
    : { sdk_msgs_per_s: null, raw_libsignal_msgs_per_s: null, client_pipeline_ratio: null };
}

/** The repository's workspaces, folder -> package name, to name the project's own code in profiles. */
function projectWorkspaces(root: string): Record<string, string> {
  const read = (path: string): { name?: string; workspaces?: string[] } =>
    JSON.parse(readFileSync(path, "utf8")) as { name?: string; workspaces?: string[] };
  const out: Record<string, string> = {};
  for (const folder of read(`${root}package.json`).workspaces ?? []) {
    try {
      out[folder] = read(`${root}${folder}/package.json`).name ?? `${folder}/`;
    } catch {
      out[folder] = `${folder}/`;
    }
  }
  return out;
}

/** The breakdown of one N's profile files (main thread and workers together); undefined without samples. */
function analyzeProfiles(files: string[]): ProfileBreakdown | undefined {
  if (files.length === 0) return undefined;
  const root = fileURLToPath(new URL("../../../", import.meta.url));
  const profiles = files.map((f) => JSON.parse(readFileSync(f, "utf8")) as CpuProfile);
  const breakdown = analyzeCpuProfiles(profiles, { root, workspaces: projectWorkspaces(root) });
  return breakdown.samples === 0 ? undefined : breakdown;
}

try {
  await main();
  // Sockets closing in the background must not hold the process open.
  process.exit(0);
} catch (error) {
  log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
}
