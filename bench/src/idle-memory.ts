/**
 * Idle memory per connection: the server child's RSS after a full GC with
 * `count` connected, idle devices, minus its RSS after a GC before they
 * connected. A short warm-up connection round comes first, so one-off costs
 * (lazy module loading, JIT, first database pages) are in the baseline and not
 * divided among the connections.
 */
import type { DevicePool } from "./device-pool.js";
import type { ServerProcess } from "./server-process.js";
import { sleep } from "./stats.js";

/** Options of {@link measureIdleMemory}. */
export interface IdleMemoryOptions {
  count: number;
  /** Devices connected and closed before the baseline. @default 50 */
  warmupCount?: number;
  /** Wait before each RSS reading. @default 3000 */
  settleMs?: number;
}

/** The measurement and how it was taken. */
export interface IdleMemoryResult {
  connections: number;
  baselineRssBytes: number;
  rssBytes: number;
  /** (rss - baseline) / connections, in KiB. */
  kbPerConnection: number;
  /** Whether the child ran a full GC before each reading (needs the gc hook). */
  gcRan: boolean;
  /** V8 heap in use and memory outside it (Buffers, native), above baseline, in KiB per connection. */
  heapUsedKbPerConnection: number;
  externalKbPerConnection: number;
  /** Time to connect every device and see its queue-empty, in ms. */
  connectMs: number;
}

/** Measures the idle RSS cost per device; `connect(k)` opens k devices against `server`. */
export async function measureIdleMemory(
  server: ServerProcess,
  connect: (count: number) => Promise<DevicePool>,
  options: IdleMemoryOptions,
): Promise<IdleMemoryResult> {
  const settleMs = options.settleMs ?? 3_000;
  const warmup = await connect(Math.min(options.warmupCount ?? 50, options.count));
  warmup.close();
  await sleep(settleMs);
  const before = await server.collectGarbage();
  const baselineRssBytes = await server.rssBytes();

  const started = performance.now();
  const pool = await connect(options.count);
  const connectMs = performance.now() - started;
  await sleep(settleMs);
  const after = await server.collectGarbage();
  const rssBytes = await server.rssBytes();
  pool.close();
  const perConnection = (field: "heapUsed" | "external"): number =>
    before.memory === undefined || after.memory === undefined
      ? Number.NaN
      : (after.memory[field] - before.memory[field]) / 1024 / options.count;

  return {
    connections: options.count,
    baselineRssBytes,
    rssBytes,
    kbPerConnection: (rssBytes - baselineRssBytes) / 1024 / options.count,
    gcRan: before.collected && after.collected,
    heapUsedKbPerConnection: perConnection("heapUsed"),
    externalKbPerConnection: perConnection("external"),
    connectMs,
  };
}
