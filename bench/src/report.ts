/**
 * The figures of a run: a human table, and one JSON object whose headline
 * keys are the performance targets below.
 */
import { cpus } from "node:os";
import type { DiskFloor } from "./disk-floor.js";
import type { IdleMemoryResult } from "./idle-memory.js";
import type { BenchResult, ServerRounds } from "./run.js";
import { median } from "./stats.js";

/** The performance targets. */
export const targets = {
  /** homeserver msgs/s / relay msgs/s, at least. */
  deliveryRatio: 0.5,
  /** homeserver p99 / relay p99 at the same open-loop rate, at most. */
  p99Ratio: 3,
  /** homeserver idle KB per device / relay idle KB per connection, at most. */
  idleRatio: 1.3,
} as const;

/** Medians over the rounds of one server at one N. */
export interface ServerFigures {
  msgs_per_s: number;
  cpu_us_per_msg: number;
  /** Medians over throughput rounds, in percent of one core. */
  server_cpu_percent: number;
  harness_cpu_percent: number;
  /** Median server CPU while 2,000 msgs/s (the latency rate) were offered. */
  server_cpu_percent_at_rate: number;
  /** The worst round's CPU use by other processes, and hypervisor steal (noise). */
  foreign_cpu_percent_max: number;
  steal_percent_max: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /**
   * The server child's event-loop delay during the latency rounds (median over
   * rounds of each round's p99 / p50; null when the child did not answer).
   */
  loop_delay_p99_ms: number | null;
  loop_delay_p50_ms: number | null;
  /** The worst event-loop delay in any latency round. */
  loop_delay_max_ms: number | null;
  /**
   * SQLite homeserver: one commit (WAL, synchronous=FULL) in its data
   * directory, timed right before each latency round; medians over rounds of
   * each round's p50 / p99. Null for the relay and PostgreSQL.
   */
  disk_commit_p50_ms: number | null;
  disk_commit_p99_ms: number | null;
  errors: number;
  first_error: string | null;
  lost: number;
  undrained: number;
  rounds_msgs_per_s: number[];
  rounds_p99_ms: number[];
  rounds_loop_delay_p99_ms: (number | null)[];
}

/** The JSON summary (the last stdout line with `--json`). */
export interface BenchSummary {
  relay_msgs_per_s: number;
  homeserver_msgs_per_s: number | null;
  delivery_ratio: number | null;
  relay_p50_ms: number;
  relay_p99_ms: number;
  homeserver_p50_ms: number | null;
  homeserver_p99_ms: number | null;
  p99_ratio: number | null;
  /** Event-loop delay p99 of each server child during the latency rounds at the headline N. */
  relay_loop_delay_p99_ms: number | null;
  homeserver_loop_delay_p99_ms: number | null;
  /**
   * The floor under the homeserver's p99 (SQLite): the p99 of one commit on
   * its data directory's disk, measured before each latency round at the
   * headline N; null on PostgreSQL.
   */
  homeserver_disk_commit_p99_ms: number | null;
  /** The database in this run (`--database`). */
  database: "sqlite" | "postgresql";
  relay_idle_kb_per_conn: number;
  homeserver_idle_kb_per_device: number | null;
  idle_ratio: number | null;
  /** The same ratio from V8 heap in use (a cross-check: RSS deltas depend on how much free heap the baseline held). */
  idle_heap_ratio: number | null;
  headline_n: number;
  latency_rate_msgs_per_s: number;
  idle_connections: number;
  targets: Record<
    "delivery_ratio" | "p99_ratio" | "idle_ratio",
    { value: number | null; target: string; pass: boolean | null }
  >;
  by_n: {
    n: number;
    window: number;
    relay: ServerFigures;
    homeserver: ServerFigures | null;
    delivery_ratio: number | null;
    p99_ratio: number | null;
  }[];
  idle: { relay: IdleMemoryResult; homeserver: IdleMemoryResult | null; method: string };
  payload: BenchResult["payload"];
  registration: { accounts: number; per_s: number } | null;
  quiet_waits: BenchResult["quietWaits"];
  server_problems: BenchResult["serverProblems"];
  config: {
    rounds: number;
    duration_s: number;
    latency_duration_s: number;
    node: string;
    cpus: number;
    started_at: string;
    elapsed_s: number;
    /** Where the homeserver's data was (PostgreSQL: URL without password, with the run's schema). */
    database_location: string;
  };
}

/** Foreign CPU or steal (percent of a core) above which a round is called noisy. */
const noiseWarnPercent = 20;

const idleMethod =
  "VmRSS of the server process (/proc/<pid>/status) after a full GC (gc() via --expose-gc and a preloaded IPC hook), " +
  "minus the same after a warm-up of 50 connections was opened and closed; readings 3 s after the last connection";

/** Reduces a run to medians, ratios and target verdicts. */
export function summarize(result: BenchResult): BenchSummary {
  const byN = result.phases.map((phase) => {
    const relay = figures(phase.relay);
    const homeserver = phase.homeserver === undefined ? null : figures(phase.homeserver);
    return {
      n: phase.n,
      window: phase.window,
      relay,
      homeserver,
      delivery_ratio: homeserver === null ? null : homeserver.msgs_per_s / relay.msgs_per_s,
      p99_ratio: homeserver === null ? null : homeserver.p99_ms / relay.p99_ms,
    };
  });
  const headline = byN[byN.length - 1]!;
  const idleHome = result.idle.homeserver;
  const idleRatio = idleHome === undefined ? null : idleHome.kbPerConnection / result.idle.relay.kbPerConnection;
  const verdict = (value: number | null, ok: (v: number) => boolean): boolean | null =>
    value === null || Number.isNaN(value) ? null : ok(value);
  return {
    relay_msgs_per_s: round(headline.relay.msgs_per_s, 0),
    homeserver_msgs_per_s: headline.homeserver === null ? null : round(headline.homeserver.msgs_per_s, 0),
    delivery_ratio: nullableRound(headline.delivery_ratio, 3),
    relay_p50_ms: round(headline.relay.p50_ms, 3),
    relay_p99_ms: round(headline.relay.p99_ms, 3),
    homeserver_p50_ms: headline.homeserver === null ? null : round(headline.homeserver.p50_ms, 3),
    homeserver_p99_ms: headline.homeserver === null ? null : round(headline.homeserver.p99_ms, 3),
    p99_ratio: nullableRound(headline.p99_ratio, 2),
    relay_loop_delay_p99_ms: headline.relay.loop_delay_p99_ms,
    homeserver_loop_delay_p99_ms: headline.homeserver?.loop_delay_p99_ms ?? null,
    homeserver_disk_commit_p99_ms: headline.homeserver?.disk_commit_p99_ms ?? null,
    database: result.database.kind,
    relay_idle_kb_per_conn: round(result.idle.relay.kbPerConnection, 1),
    homeserver_idle_kb_per_device: idleHome === undefined ? null : round(idleHome.kbPerConnection, 1),
    idle_ratio: nullableRound(idleRatio, 2),
    idle_heap_ratio:
      idleHome === undefined
        ? null
        : round(idleHome.heapUsedKbPerConnection / result.idle.relay.heapUsedKbPerConnection, 2),
    headline_n: headline.n,
    latency_rate_msgs_per_s: result.options.rate,
    idle_connections: result.options.idleConnections,
    targets: {
      delivery_ratio: {
        value: nullableRound(headline.delivery_ratio, 3),
        target: `>= ${targets.deliveryRatio}`,
        pass: verdict(headline.delivery_ratio, (v) => v >= targets.deliveryRatio),
      },
      p99_ratio: {
        value: nullableRound(headline.p99_ratio, 2),
        target: `<= ${targets.p99Ratio}`,
        pass: verdict(headline.p99_ratio, (v) => v <= targets.p99Ratio),
      },
      idle_ratio: {
        value: nullableRound(idleRatio, 2),
        target: `<= ${targets.idleRatio}`,
        pass: verdict(idleRatio, (v) => v <= targets.idleRatio),
      },
    },
    by_n: byN,
    idle: { relay: result.idle.relay, homeserver: idleHome ?? null, method: idleMethod },
    payload: result.payload,
    registration:
      result.registration === undefined
        ? null
        : {
            accounts: result.registration.accounts,
            per_s: round(result.registration.accounts / (result.registration.ms / 1000), 0),
          },
    quiet_waits: result.quietWaits,
    server_problems: result.serverProblems,
    config: {
      rounds: result.options.rounds,
      duration_s: result.options.durationMs / 1000,
      latency_duration_s: result.options.latencyDurationMs / 1000,
      node: process.version,
      cpus: cpus().length,
      started_at: result.startedAt,
      elapsed_s: round(result.elapsedS, 1),
      database_location: result.database.where,
    },
  };
}

function figures(rounds: ServerRounds): ServerFigures {
  const t = rounds.throughput;
  const l = rounds.latency;
  const errorRound = [...t, ...l].find((r) => r.firstError !== undefined);
  const delays = l.flatMap((r) => (r.loopDelay === undefined ? [] : [r.loopDelay]));
  const floors = rounds.diskFloor ?? [];
  const floor = (pick: (f: DiskFloor) => number): number | null =>
    floors.length === 0 ? null : round(median(floors.map(pick)), 2);
  const loopDelay = (pick: (d: (typeof delays)[number]) => number, of: (v: number[]) => number): number | null =>
    delays.length === 0 ? null : round(of(delays.map(pick)), 2);
  return {
    msgs_per_s: round(median(t.map((r) => r.deliveredPerS)), 0),
    cpu_us_per_msg: round(median(t.map((r) => r.serverCpuUsPerMsg)), 1),
    server_cpu_percent: round(median(t.map((r) => r.cpu.serverPercent)), 0),
    harness_cpu_percent: round(median(t.map((r) => r.cpu.harnessPercent)), 0),
    server_cpu_percent_at_rate: round(median(l.map((r) => r.cpu.serverPercent)), 0),
    foreign_cpu_percent_max: round(Math.max(...[...t, ...l].map((r) => r.cpu.foreignPercent)), 0),
    steal_percent_max: round(Math.max(...[...t, ...l].map((r) => r.cpu.stealPercent)), 0),
    p50_ms: round(median(l.map((r) => r.p50Ms)), 3),
    p99_ms: round(median(l.map((r) => r.p99Ms)), 3),
    max_ms: round(Math.max(...l.map((r) => r.maxMs)), 1),
    loop_delay_p99_ms: loopDelay((d) => d.p99Ms, median),
    loop_delay_p50_ms: loopDelay((d) => d.p50Ms, median),
    loop_delay_max_ms: loopDelay(
      (d) => d.maxMs,
      (v) => Math.max(...v),
    ),
    disk_commit_p50_ms: floor((f) => f.p50Ms),
    disk_commit_p99_ms: floor((f) => f.p99Ms),
    errors: [...t, ...l].reduce((sum, r) => sum + r.errors, 0),
    first_error: errorRound?.firstError ?? null,
    lost: l.reduce((sum, r) => sum + r.lost, 0),
    undrained: t.reduce((sum, r) => sum + r.undrained, 0),
    rounds_msgs_per_s: t.map((r) => round(r.deliveredPerS, 0)),
    rounds_p99_ms: l.map((r) => round(r.p99Ms, 3)),
    rounds_loop_delay_p99_ms: l.map((r) => (r.loopDelay === undefined ? null : round(r.loopDelay.p99Ms, 2))),
  };
}

/** The human report. */
export function formatReport(summary: BenchSummary): string {
  const c = summary.config;
  const p = summary.payload;
  const lines: string[] = [];
  const table = (rows: string[][]): void => {
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows)
      lines.push(
        `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("   ")}`,
      );
  };
  const num = (v: number | null | undefined, digits = 0): string =>
    v === null || v === undefined || Number.isNaN(v)
      ? "-"
      : v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

  lines.push(`ZimChat bench: ${c.started_at}, node ${c.node}, ${c.cpus} CPUs, ${c.elapsed_s} s`);
  lines.push(
    `Payload: relay ${p.relayBytes} B binary; homeserver a real Whisper message of ${p.whisperBytes} B ` +
      `(${p.whisperPlaintextBytes} B plaintext, ${p.whisperBase64Chars} base64 chars on the wire)`,
  );
  lines.push(
    `Homeserver database: ${summary.database === "postgresql" ? "PostgreSQL" : "SQLite"} (${c.database_location})`,
  );
  lines.push(`${c.rounds} rounds per server, interleaved relay/homeserver; figures are medians over rounds.`);
  lines.push("");
  lines.push(
    `Throughput, closed loop (device i -> i+1, window per device, ${c.duration_s} s per round; a message = sent, pushed, acked)`,
  );
  const tRows = [
    [
      "N",
      "window",
      "relay msgs/s",
      "homeserver msgs/s",
      "ratio",
      "relay CPU/msg",
      "homeserver CPU/msg",
      "harness CPU (r/h)",
    ],
  ];
  for (const row of summary.by_n) {
    tRows.push([
      num(row.n),
      num(row.window),
      num(row.relay.msgs_per_s),
      num(row.homeserver?.msgs_per_s),
      num(row.delivery_ratio, 2),
      `${num(row.relay.cpu_us_per_msg)} us`,
      row.homeserver === null ? "-" : `${num(row.homeserver.cpu_us_per_msg)} us`,
      `${num(row.relay.harness_cpu_percent)}% / ${row.homeserver === null ? "-" : `${num(row.homeserver.harness_cpu_percent)}%`}`,
    ]);
  }
  table(tRows);
  lines.push("");
  lines.push(
    `Latency, open loop at ${num(summary.latency_rate_msgs_per_s)} msgs/s (due time -> receipt, ${c.latency_duration_s} s per round)`,
  );
  const lRows = [
    [
      "N",
      "relay p50",
      "relay p99",
      "homeserver p50",
      "homeserver p99",
      "p99 ratio",
      "loop delay p99 (r/h)",
      "server CPU (r/h)",
    ],
  ];
  for (const row of summary.by_n) {
    lRows.push([
      num(row.n),
      `${num(row.relay.p50_ms, 2)} ms`,
      `${num(row.relay.p99_ms, 2)} ms`,
      row.homeserver === null ? "-" : `${num(row.homeserver.p50_ms, 2)} ms`,
      row.homeserver === null ? "-" : `${num(row.homeserver.p99_ms, 2)} ms`,
      num(row.p99_ratio, 2),
      `${num(row.relay.loop_delay_p99_ms, 2)} / ${row.homeserver === null ? "-" : num(row.homeserver.loop_delay_p99_ms, 2)} ms`,
      `${num(row.relay.server_cpu_percent_at_rate)}% / ${row.homeserver === null ? "-" : `${num(row.homeserver.server_cpu_percent_at_rate)}%`}`,
    ]);
  }
  table(lRows);
  lines.push(
    "  loop delay: how late each server child's event loop ran a 1 ms timer during the recorded part of the latency rounds (monitorEventLoopDelay)",
  );
  for (const row of summary.by_n) {
    if (row.homeserver?.disk_commit_p99_ms == null) continue;
    lines.push(
      `  disk floor at N = ${num(row.n)}: one SQLite commit (WAL, synchronous=FULL) in the homeserver's data directory, ` +
        `p50 ${num(row.homeserver.disk_commit_p50_ms, 2)} ms, p99 ${num(row.homeserver.disk_commit_p99_ms, 2)} ms ` +
        "(timed before each latency round; no envelope is pushed before its commit)",
    );
  }
  lines.push("");
  const ir = summary.idle.relay;
  const ih = summary.idle.homeserver;
  lines.push(
    `Idle memory at ${num(summary.idle_connections)} connections (RSS above baseline, after GC${ir.gcRan && (ih?.gcRan ?? true) ? "" : " - GC NOT confirmed"})`,
  );
  table([
    ["", "KB per connection", "baseline RSS", "RSS connected", "heap used KB/conn", "external KB/conn", "connect time"],
    idleRow("relay (bare)", ir),
    ...(ih === null ? [] : [idleRow("homeserver (authenticated)", ih)]),
  ]);
  lines.push(`  method: ${summary.idle.method}`);
  if (summary.idle_heap_ratio !== null) {
    lines.push(
      `  cross-check: V8 heap in use per connection, homeserver/relay = ${num(summary.idle_heap_ratio, 2)} (RSS ratio ${num(summary.idle_ratio, 2)})`,
    );
  }
  lines.push("");
  lines.push(`Targets (headline N = ${num(summary.headline_n)}, homeserver on ${summary.database})`);
  const verdict = (pass: boolean | null): string => (pass === null ? "n/a" : pass ? "PASS" : "MISS");
  const t = summary.targets;
  table([
    [
      "delivery ratio (homeserver/relay msgs/s)",
      num(t.delivery_ratio.value, 2),
      t.delivery_ratio.target,
      verdict(t.delivery_ratio.pass),
    ],
    [
      `p99 ratio at ${num(summary.latency_rate_msgs_per_s)} msgs/s`,
      num(t.p99_ratio.value, 2),
      t.p99_ratio.target,
      verdict(t.p99_ratio.pass),
    ],
    [
      "idle memory ratio (per device / per connection)",
      num(t.idle_ratio.value, 2),
      t.idle_ratio.target,
      verdict(t.idle_ratio.pass),
    ],
  ]);
  const notes: string[] = [];
  for (const row of summary.by_n) {
    for (const [name, f] of [
      ["relay", row.relay],
      ["homeserver", row.homeserver],
    ] as const) {
      if (f === null) continue;
      if (f.errors > 0) notes.push(`N = ${row.n} ${name}: ${f.errors} errors, first: ${f.first_error}`);
      if (f.lost > 0)
        notes.push(
          `N = ${row.n} ${name}: ${f.lost} messages not received within 30 s of the end of a latency round (left out of the percentiles)`,
        );
      if (f.msgs_per_s < summary.latency_rate_msgs_per_s) {
        notes.push(
          `N = ${row.n} ${name}: its throughput (${num(f.msgs_per_s)} msgs/s) is below the offered ${num(summary.latency_rate_msgs_per_s)} msgs/s, ` +
            "so it is overloaded in the latency rounds and its latency grows with the round length",
        );
      }
      if (f.undrained > 0)
        notes.push(`N = ${row.n} ${name}: ${f.undrained} messages still in flight after a throughput round`);
    }
  }
  const noisy = summary.by_n.flatMap((row) =>
    [row.relay, row.homeserver].flatMap((f) =>
      f === null ? [] : [Math.max(f.foreign_cpu_percent_max, f.steal_percent_max)],
    ),
  );
  if (Math.max(...noisy) >= noiseWarnPercent) {
    notes.push(
      `noise: other processes or hypervisor steal took up to ${num(Math.max(...noisy))}% of a core during some rounds; compare with care`,
    );
  }
  const q = summary.quiet_waits;
  if (q.count > 0) {
    notes.push(
      `waited ${num(q.totalMs / 1000, 1)} s in all, before ${q.count} rounds, for other processes to go quiet${q.stillNoisy > 0 ? ` (${q.stillNoisy} still noisy)` : ""}`,
    );
  }
  for (const s of summary.server_problems) {
    if (s.count > 0) notes.push(`${s.name} logged ${s.count} warn/error lines; first: ${s.first[0]}`);
  }
  if (summary.registration !== null)
    notes.push(`registration: ${num(summary.registration.accounts)} accounts at ${num(summary.registration.per_s)}/s`);
  if (notes.length > 0) {
    lines.push("");
    lines.push("Notes");
    for (const note of notes) lines.push(`  ${note}`);
  }
  return lines.join("\n");
}

function idleRow(name: string, r: IdleMemoryResult): string[] {
  const kb = (v: number): string => (Number.isNaN(v) ? "-" : v.toFixed(1));
  return [
    name,
    kb(r.kbPerConnection),
    mb(r.baselineRssBytes),
    mb(r.rssBytes),
    kb(r.heapUsedKbPerConnection),
    kb(r.externalKbPerConnection),
    `${(r.connectMs / 1000).toFixed(1)} s`,
  ];
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function nullableRound(value: number | null, digits: number): number | null {
  return value === null ? null : round(value, digits);
}
