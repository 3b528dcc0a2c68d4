/**
 * The WAL-checkpoint row: delivered msgs/s of one SQLite homeserver that
 * checkpoints and truncates its WAL every 2 s (the default, so acknowledged
 * envelopes leave the files within seconds) next to one that leaves it to
 * SQLite's auto-checkpoint (`--sqlite-checkpoint-ms 0`), interleaved rounds.
 * Both run with `secure_delete` on: the figure is the cost of the timely
 * checkpoints.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { registerAccounts } from "./accounts.js";
import { connectHomeserverPool, type DevicePool } from "./device-pool.js";
import { startServer, type ServerProcess } from "./server-process.js";
import { createAccountKeys, createWhisperFixture } from "@zimchat/testing/signal";
import { median } from "./stats.js";
import { measureThroughput } from "./throughput.js";

/** One setup's rounds. */
interface CheckpointSetup {
  name: string;
  deliveredPerS: number[];
  serverCpuUsPerMsg: number[];
  errors: number;
}

/** The row's figures. */
export interface WalCheckpointBenchResult {
  devices: number;
  withCheckpoints: CheckpointSetup;
  without: CheckpointSetup;
  /** Median msgs/s with timely checkpoints over without. */
  ratio: number;
  /** Extra server CPU per message with timely checkpoints, in microseconds (medians). */
  cpuUsPerMsg: number;
}

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const homeserverScript = fileURLToPath(new URL("./cli/main.js", import.meta.resolve("@zimchat/server")));

/** Runs both setups with interleaved rounds; servers and data directories are removed whatever happens. */
export async function runWalCheckpointBench(
  quick: boolean,
  log: (line: string) => void,
): Promise<WalCheckpointBenchResult> {
  const options = {
    devices: quick ? 30 : 90,
    window: quick ? 8 : 16,
    rounds: quick ? 2 : 3,
    warmupMs: quick ? 500 : 1000,
    durationMs: quick ? 1500 : 4000,
  };
  const tmpDir = `${repoRoot}.bench-tmp/checkpoints-${process.pid}-${randomBytes(3).toString("hex")}`;
  const whisper = await createWhisperFixture(256);
  const keys = createAccountKeys();
  const running: { result: CheckpointSetup; server: ServerProcess; pool: DevicePool }[] = [];
  try {
    for (const [name, checkpointMs] of [
      ["checkpoint every 2 s", "2000"],
      ["auto-checkpoint only", "0"],
    ] as const) {
      const dataDir = `${tmpDir}/${running.length}`;
      mkdirSync(dataDir, { recursive: true });
      const args = [
        "serve",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--data-dir",
        dataDir,
        "--registration",
        "open",
        "--rate-limits",
        "off",
        "--log-level",
        "info",
        "--sqlite-checkpoint-ms",
        checkpointMs,
      ];
      const server = await startServer({ name, script: homeserverScript, args, cwd: repoRoot });
      const result: CheckpointSetup = { name, deliveredPerS: [], serverCpuUsPerMsg: [], errors: 0 };
      running.push({ result, server, pool: undefined as unknown as DevicePool });
      const accounts = await registerAccounts({ baseUrl: server.url, count: options.devices, keys, concurrency: 4 });
      running.at(-1)!.pool = await connectHomeserverPool(
        { url: server.url, count: options.devices },
        accounts,
        whisper.ciphertext,
      );
      log(`checkpoints: ${name} ready (${options.devices} devices)`);
    }
    for (const { server, pool } of running)
      await measureThroughput(pool, server, { window: options.window, warmupMs: 0, durationMs: options.warmupMs * 2 });
    for (let round = 1; round <= options.rounds; round++) {
      for (const { result, server, pool } of running) {
        const r = await measureThroughput(pool, server, {
          window: options.window,
          warmupMs: options.warmupMs,
          durationMs: options.durationMs,
        });
        result.deliveredPerS.push(r.deliveredPerS);
        result.serverCpuUsPerMsg.push(r.serverCpuUsPerMsg);
        result.errors += r.errors + r.undrained;
        log(
          `checkpoints round ${round}: ${result.name} ${r.deliveredPerS.toFixed(0)} msgs/s, ${r.serverCpuUsPerMsg.toFixed(0)} us server CPU/msg`,
        );
      }
    }
  } finally {
    for (const { server, pool } of running) {
      pool?.close();
      await server.stop();
    }
    rmSync(tmpDir, { recursive: true, force: true });
  }
  const [withCheckpoints, without] = running.map((r) => r.result) as [CheckpointSetup, CheckpointSetup];
  return {
    devices: options.devices,
    withCheckpoints,
    without,
    ratio: median(withCheckpoints.deliveredPerS) / median(without.deliveredPerS),
    cpuUsPerMsg: median(withCheckpoints.serverCpuUsPerMsg) - median(without.serverCpuUsPerMsg),
  };
}

/** The report section for the row. */
export function formatWalCheckpointBench(r: WalCheckpointBenchResult): string {
  const row = (s: CheckpointSetup): string =>
    `  ${s.name.padEnd(22)} ${median(s.deliveredPerS).toFixed(0).padStart(7)} msgs/s   ${median(s.serverCpuUsPerMsg).toFixed(0).padStart(5)} us server CPU/msg   (rounds: ${s.deliveredPerS.map((x) => x.toFixed(0)).join(", ")})${s.errors ? `   ${s.errors} errors` : ""}`;
  return [
    `SQLite WAL checkpoints (secure_delete on in both): delivered msgs/s, ${r.devices} devices, interleaved rounds, medians`,
    row(r.withCheckpoints),
    row(r.without),
    `  cost of timely checkpoints ${r.ratio.toFixed(2).padStart(5)} x msgs/s, ${r.cpuUsPerMsg >= 0 ? "+" : ""}${r.cpuUsPerMsg.toFixed(0)} us server CPU per message`,
  ].join("\n");
}
