/**
 * CPU accounting for one measured interval: the server child, this harness,
 * and everything else on the machine. These machines are shared, so a round
 * with much foreign CPU or hypervisor steal is a noisy round, and the report
 * says so instead of hiding it.
 */
import { readFile } from "node:fs/promises";
import type { ServerProcess } from "./server-process.js";

/** A point-in-time reading; compare two with {@link cpuBetween}. */
export interface CpuSample {
  at: number;
  serverMs: number;
  harness: NodeJS.CpuUsage;
  /** Busy time of all CPUs (user, nice, system, irq, softirq), in ms. */
  machineBusyMs: number;
  /** Time the hypervisor ran something else while a vCPU wanted to run, in ms. */
  machineStealMs: number;
}

/** CPU use over an interval, in percent of one core. */
export interface CpuShare {
  serverPercent: number;
  harnessPercent: number;
  /** Busy time of every other process on the machine. */
  foreignPercent: number;
  stealPercent: number;
  /** Server CPU time over the interval, in ms (for per-message figures). */
  serverMs: number;
}

const msPerTick = 10;

/** What {@link waitForQuiet} saw. */
export interface QuietWait {
  waitedMs: number;
  /** Foreign CPU in the last sample, in percent of one core. */
  foreignPercent: number;
}

/**
 * Before a round: samples the machine in short windows until other processes
 * use less than `thresholdPercent` of a core, or `maxWaitMs` passes. The
 * servers are idle between rounds, so their CPU and this process's are
 * subtracted and what remains is someone else's.
 */
export async function waitForQuiet(
  servers: readonly ServerProcess[],
  thresholdPercent: number,
  maxWaitMs: number,
): Promise<QuietWait> {
  const ourMs = async (): Promise<number> => {
    const children = await Promise.all(servers.map((s) => s.cpuMs()));
    const harness = process.cpuUsage();
    return children.reduce((a, b) => a + b, 0) + (harness.user + harness.system) / 1000;
  };
  const started = performance.now();
  for (;;) {
    const [machineBefore, oursBefore] = await Promise.all([readMachine(), ourMs()]);
    const at = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const [machineAfter, oursAfter] = await Promise.all([readMachine(), ourMs()]);
    const foreignMs =
      machineAfter.busyMs -
      machineBefore.busyMs -
      (oursAfter - oursBefore) +
      (machineAfter.stealMs - machineBefore.stealMs);
    const foreignPercent = Math.max(0, (foreignMs / (performance.now() - at)) * 100);
    const waitedMs = performance.now() - started;
    if (foreignPercent < thresholdPercent || waitedMs >= maxWaitMs) return { waitedMs, foreignPercent };
  }
}

async function readMachine(): Promise<{ busyMs: number; stealMs: number }> {
  const stat = await readFile("/proc/stat", "utf8");
  const fields = stat.slice(0, stat.indexOf("\n")).trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return { busyMs: (user + nice + system + irq + softirq) * msPerTick, stealMs: steal * msPerTick };
}

/** Reads the server's, this process's and the machine's CPU counters. */
export async function sampleCpu(server: ServerProcess): Promise<CpuSample> {
  const [serverMs, machine] = await Promise.all([server.cpuMs(), readMachine()]);
  return {
    at: performance.now(),
    serverMs,
    harness: process.cpuUsage(),
    machineBusyMs: machine.busyMs,
    machineStealMs: machine.stealMs,
  };
}

/** What was used between two samples. */
export function cpuBetween(start: CpuSample, end: CpuSample): CpuShare {
  const wallMs = end.at - start.at;
  const serverMs = end.serverMs - start.serverMs;
  const harnessMs = (end.harness.user - start.harness.user + end.harness.system - start.harness.system) / 1000;
  const foreignMs = Math.max(0, end.machineBusyMs - start.machineBusyMs - serverMs - harnessMs);
  const percent = (ms: number): number => (ms / wallMs) * 100;
  return {
    serverPercent: percent(serverMs),
    harnessPercent: percent(harnessMs),
    foreignPercent: percent(foreignMs),
    stealPercent: percent(end.machineStealMs - start.machineStealMs),
    serverMs,
  };
}
