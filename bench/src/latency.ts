/**
 * Open-loop latency: messages are offered at a fixed rate on a schedule that
 * does not wait for the server (message k is due at t0 + k / rate, from
 * device k mod N to the next device), and each latency runs from the due
 * time to receipt at the recipient, so a slow server is not hidden by a
 * sender that waited for it (no coordinated omission).
 */
import { cpuBetween, sampleCpu, type CpuShare } from "./cpu-usage.js";
import type { DevicePool } from "./device-pool.js";
import type { LoopDelayFigures } from "./child-hook.js";
import type { ServerProcess } from "./server-process.js";
import { percentile, waitUntil } from "./stats.js";

/** Options of {@link measureLatency}. */
export interface LatencyOptions {
  /** Offered messages per second. */
  rate: number;
  /** How long messages are offered. */
  durationMs: number;
  /** Messages due in this first part are sent but not recorded. */
  warmupMs: number;
  /**
   * How long to wait for the last messages after the schedule ends. Late
   * messages still count, with their full latency: an overloaded server's
   * backlog shows in the percentiles instead of being dropped. @default 30000
   */
  graceMs?: number;
}

/** One round's result, in milliseconds. */
export interface LatencyRound {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Recorded messages. */
  count: number;
  /** Messages not received within the grace period (or refused): not in the percentiles. */
  lost: number;
  /** How late the harness sent, at the 99th percentile (its own scheduling lag). */
  sendLagP99Ms: number;
  /** CPU while messages were offered: server, harness, other processes, steal. */
  cpu: CpuShare;
  /**
   * The server's event-loop delay from the first recorded message's due time
   * until every message was received; undefined when the child did not answer.
   */
  loopDelay: LoopDelayFigures | undefined;
  errors: number;
  firstError?: string;
}

/** Runs one open-loop round over all devices of `pool`. */
export async function measureLatency(
  pool: DevicePool,
  server: ServerProcess,
  options: LatencyOptions,
): Promise<LatencyRound> {
  const n = pool.size;
  const total = Math.round((options.rate * options.durationMs) / 1000);
  const interval = 1000 / options.rate;
  const recordFrom = Math.round((options.rate * options.warmupMs) / 1000);
  const latencies: number[] = [];
  const lags: number[] = [];
  // A message's id is known from the sender's callback; the push may come first.
  const dueById = new Map<string, { due: number; k: number }>();
  const arrivedById = new Map<string, number>();
  let settled = 0;
  let acksPending = 0;
  let errors = 0;
  let firstError: string | undefined;
  const fail = (error: string): void => {
    errors += 1;
    firstError ??= error;
  };
  const record = (due: number, arrived: number, k: number): void => {
    settled += 1;
    if (k >= recordFrom) latencies.push(arrived - due);
  };

  pool.listen({
    delivered: (_recipient, ids, at) => {
      acksPending += 1;
      for (const id of ids) {
        const sent = dueById.get(id);
        if (sent === undefined) {
          arrivedById.set(id, at);
        } else {
          dueById.delete(id);
          record(sent.due, at, sent.k);
        }
      }
    },
    acked: (_recipient, _count, error) => {
      acksPending -= 1;
      if (error !== undefined) fail(`ack: ${error}`);
    },
  });

  const cpuStart = await sampleCpu(server);
  const t0 = performance.now() + 20;
  let next = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (next < total && t0 + next * interval <= now) {
        const k = next++;
        const due = t0 + k * interval;
        if (k === recordFrom) server.startLoopDelay();
        if (k >= recordFrom) lags.push(now - due);
        const from = k % n;
        pool.send(from, (from + 1) % n, (outcome) => {
          if (!outcome.ok) {
            fail(`send: ${outcome.error}`);
            return;
          }
          const arrived = arrivedById.get(outcome.id);
          if (arrived === undefined) {
            dueById.set(outcome.id, { due, k });
          } else {
            arrivedById.delete(outcome.id);
            record(due, arrived, k);
          }
        });
      }
      if (next >= total) {
        resolve();
      } else if (t0 + next * interval - performance.now() > 2) {
        setTimeout(tick, 1);
      } else {
        // Sub-millisecond spacing: spin through the event loop (I/O still runs between turns).
        setImmediate(tick);
      }
    };
    tick();
  });
  const cpu = cpuBetween(cpuStart, await sampleCpu(server));
  await waitUntil(() => settled + errors >= total, options.graceMs ?? 30_000);
  const loopDelay = await server.readLoopDelay();
  await waitUntil(() => acksPending === 0, options.graceMs ?? 30_000);
  pool.listen(undefined);

  latencies.sort((a, b) => a - b);
  lags.sort((a, b) => a - b);
  return {
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.length > 0 ? latencies[latencies.length - 1]! : Number.NaN,
    count: latencies.length,
    lost: total - settled,
    sendLagP99Ms: percentile(lags, 99),
    cpu,
    loopDelay,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
  };
}
