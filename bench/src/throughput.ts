/**
 * Closed-loop throughput: device i sends to device i+1 (mod N) and keeps
 * `window` messages in flight; a slot frees when the recipient's
 * acknowledgement is answered, so a message counts as one full round:
 * sent, accepted, pushed, received, acknowledged.
 */
import { cpuBetween, sampleCpu, type CpuShare } from "./cpu-usage.js";
import type { DevicePool } from "./device-pool.js";
import type { ServerProcess } from "./server-process.js";
import { sleep, waitUntil } from "./stats.js";

/** Options of {@link measureThroughput}. */
export interface ThroughputOptions {
  /** Messages in flight per sending device. */
  window: number;
  /** Sending before the measured interval starts. */
  warmupMs: number;
  /** The measured interval. */
  durationMs: number;
  /** How long to wait for in-flight messages after sending stops. @default 15000 */
  drainTimeoutMs?: number;
}

/** One round's result. */
export interface ThroughputRound {
  /** Messages received by their recipient per second, over the measured interval. */
  deliveredPerS: number;
  /** Acknowledgements answered per second, over the measured interval. */
  ackedPerS: number;
  /** Server CPU time per delivered message, in microseconds. */
  serverCpuUsPerMsg: number;
  /** CPU over the interval: server, harness, other processes, steal. */
  cpu: CpuShare;
  /** Sends or acks the server refused, with the first error. */
  errors: number;
  firstError?: string;
  /** Messages still in flight when the drain timed out. */
  undrained: number;
}

/** Runs one throughput round over all devices of `pool`. */
export async function measureThroughput(
  pool: DevicePool,
  server: ServerProcess,
  options: ThroughputOptions,
): Promise<ThroughputRound> {
  const n = pool.size;
  const inFlight = new Int32Array(n);
  let running = true;
  let delivered = 0;
  let acked = 0;
  let errors = 0;
  let firstError: string | undefined;
  const fail = (error: string): void => {
    errors += 1;
    firstError ??= error;
  };

  const pump = (from: number): void => {
    while (running && inFlight[from]! < options.window) {
      inFlight[from]! += 1;
      pool.send(from, (from + 1) % n, (outcome) => {
        if (!outcome.ok) {
          fail(`send: ${outcome.error}`);
          inFlight[from]! -= 1;
          // Do not hammer a failing server in a tight loop.
          setTimeout(() => pump(from), 10);
        }
      });
    }
  };

  pool.listen({
    delivered: (_recipient, ids) => {
      delivered += ids.length;
    },
    acked: (recipient, count, error) => {
      if (error !== undefined) fail(`ack: ${error}`);
      acked += count;
      const sender = (recipient - 1 + n) % n;
      inFlight[sender] = Math.max(0, inFlight[sender]! - count);
      pump(sender);
    },
  });

  for (let i = 0; i < n; i++) pump(i);
  await sleep(options.warmupMs);
  const start = { delivered, acked, cpu: await sampleCpu(server) };
  await sleep(options.durationMs);
  const end = { delivered, acked, cpu: await sampleCpu(server) };
  running = false;

  const drained = await waitUntil(() => inFlight.every((v) => v === 0), options.drainTimeoutMs ?? 15_000);
  pool.listen(undefined);

  const seconds = (end.cpu.at - start.cpu.at) / 1000;
  const deliveredInInterval = end.delivered - start.delivered;
  const cpu = cpuBetween(start.cpu, end.cpu);
  return {
    deliveredPerS: deliveredInInterval / seconds,
    ackedPerS: (end.acked - start.acked) / seconds,
    serverCpuUsPerMsg: deliveredInInterval > 0 ? (cpu.serverMs * 1000) / deliveredInInterval : Number.NaN,
    cpu,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    undrained: drained ? 0 : inFlight.reduce((a, b) => a + b, 0),
  };
}
