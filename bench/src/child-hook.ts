/**
 * Preloaded into each server child (`node --expose-gc --import child-hook.js`):
 * the bench's control channel into the server, over the child's IPC channel,
 * so nothing of it lives in the homeserver's own code. It answers:
 *
 * - a full garbage collection before the bench reads the child's RSS, in
 *   every worker thread first (the SQLite storage worker's heap is in the
 *   same RSS), then in the main thread;
 * - an event-loop delay histogram (`perf_hooks.monitorEventLoopDelay`),
 *   started and read around the latency rounds;
 * - a CPU profile (the inspector's `Profiler` domain) started and stopped
 *   around the measured rounds, written as a `.cpuprofile` file, in the main
 *   thread and in every worker thread (node runs `--import` in workers too;
 *   they are told over a `BroadcastChannel`).
 *
 * A child whose bench process died shuts down instead of lingering. The hook
 * changes nothing else in the server; the histogram runs only between a start
 * and a read, and the profiler only between a start and a stop.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { BroadcastChannel, isMainThread, threadId } from "node:worker_threads";

/** The request the bench sends over IPC. */
export const gcRequest = "bench:gc";
/** The answer: whether a collection actually ran (needs `--expose-gc`), and `process.memoryUsage()` after it. */
export const gcDone = "bench:gc-done";
/** Clears the event-loop delay histogram and starts recording (no answer). */
export const loopDelayStart = "bench:loop-delay-start";
/** Stops recording and asks for the figures; answered with {@link loopDelayReport}. */
export const loopDelayRead = "bench:loop-delay-read";
export const loopDelayReport = "bench:loop-delay";
/** Starts CPU profiles (`file`: the main thread's path); answered with {@link profileStarted}. */
export const profileStart = "bench:profile-start";
export const profileStarted = "bench:profile-started";
/** Stops them and writes the files; answered with {@link profileStopped} and the paths written. */
export const profileStop = "bench:profile-stop";
export const profileStopped = "bench:profile-stopped";

/** Event-loop delay over one recording: how late the loop ran a timer due every `resolutionMs`, in ms. */
export interface LoopDelayFigures {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  /** Timer turns recorded. */
  samples: number;
  resolutionMs: number;
}

/**
 * Sampling period of the delay histogram. The histogram records the time
 * between timer turns, so the delay is that minus the period. 1 ms catches
 * the millisecond-long stalls of a synchronous commit (10 ms, node's default,
 * misses most of them); it costs about 3% of a core in an idle process and
 * runs only during latency rounds.
 */
const loopDelayResolutionMs = 1;
/** Worker threads learn of profile starts and stops here. */
const profileChannelName = "zimchat-bench:profile";
/** How long the main thread waits for the workers' profiles after a stop. */
const workerProfileWaitMs = 5_000;

type WorkerMessage =
  | { type: "start" }
  | { type: "started"; threadId: number }
  | { type: "stop"; file: string }
  | { type: "stopped"; threadId: number; file: string | undefined }
  | { type: "gc" }
  | { type: "gc-done"; threadId: number };

/** How long the main thread waits for worker threads to collect their own heaps before it collects its own. */
const workerGcWaitMs = 300;

/** The inspector's sampling profiler for the calling thread. */
class ThreadProfiler {
  private session: Session | undefined;

  async start(): Promise<void> {
    if (this.session !== undefined) return;
    this.session = new Session();
    this.session.connect();
    await this.post("Profiler.enable");
    await this.post("Profiler.start");
  }

  /** Stops the profile and writes it to `file`; false when none was running. */
  async stop(file: string): Promise<boolean> {
    if (this.session === undefined) return false;
    try {
      const { profile } = (await this.post("Profiler.stop")) as { profile: unknown };
      writeFileSync(file, JSON.stringify(profile));
      return true;
    } finally {
      this.session.disconnect();
      this.session = undefined;
    }
  }

  private post(method: string, params?: object): Promise<unknown> {
    return new Promise((resolve, reject) =>
      this.session!.post(method, params, (error, result) => (error ? reject(error) : resolve(result))),
    );
  }
}

/** The main thread's profile file while a profile runs. */
let pendingProfileFile: string | undefined;

if (isMainThread && process.channel !== undefined) {
  const gc = (globalThis as { gc?: () => void }).gc;
  let histogram: IntervalHistogram | undefined;
  const profiler = new ThreadProfiler();
  const workers = new BroadcastChannel(profileChannelName);
  workers.unref();
  const workerThreads = new Set<number>();
  const stoppedWorkers = new Map<number, string | undefined>();
  let workerGcs = 0;
  workers.onmessage = (event: unknown): void => {
    const message = (event as { data: WorkerMessage }).data;
    if (message.type === "gc-done") workerGcs++;
    else if (message.type === "started") workerThreads.add(message.threadId);
    else if (message.type === "stopped") stoppedWorkers.set(message.threadId, message.file);
  };

  process.on("message", (raw: unknown) => {
    if (typeof raw !== "object" || raw === null) return;
    const message = raw as { type?: unknown; file?: unknown };
    switch (message.type) {
      case gcRequest:
        // Worker threads (the SQLite storage worker) have heaps of their own in the same RSS: they collect first.
        workerGcs = 0;
        workers.postMessage({ type: "gc" } satisfies WorkerMessage);
        setTimeout(() => {
          // Two passes: the first may only schedule finalizers for native handles.
          gc?.();
          gc?.();
          process.send?.({
            type: gcDone,
            collected: gc !== undefined,
            memory: process.memoryUsage(),
            workerThreadsCollected: workerGcs,
          });
        }, workerGcWaitMs);
        break;
      case loopDelayStart:
        histogram?.disable();
        histogram = monitorEventLoopDelay({ resolution: loopDelayResolutionMs });
        histogram.enable();
        break;
      case loopDelayRead: {
        const h = histogram;
        h?.disable();
        histogram = undefined;
        const ms = (ns: number): number => Math.max(0, ns / 1e6 - loopDelayResolutionMs);
        const figures: LoopDelayFigures | undefined =
          h === undefined || h.count === 0
            ? undefined
            : {
                p50Ms: ms(h.percentile(50)),
                p99Ms: ms(h.percentile(99)),
                maxMs: ms(h.max),
                meanMs: ms(h.mean),
                samples: h.count,
                resolutionMs: loopDelayResolutionMs,
              };
        process.send?.({ type: loopDelayReport, figures });
        break;
      }
      case profileStart:
        if (typeof message.file !== "string") return;
        workerThreads.clear();
        stoppedWorkers.clear();
        void profiler.start().then(
          () => {
            workers.postMessage({ type: "start" } satisfies WorkerMessage);
            process.send?.({ type: profileStarted, ok: true });
          },
          (error: unknown) => process.send?.({ type: profileStarted, ok: false, error: String(error) }),
        );
        pendingProfileFile = message.file;
        break;
      case profileStop: {
        const file = pendingProfileFile;
        if (file === undefined) return;
        pendingProfileFile = undefined;
        workers.postMessage({ type: "stop", file } satisfies WorkerMessage);
        void (async () => {
          const files: string[] = [];
          try {
            if (await profiler.stop(file)) files.push(file);
          } catch (error) {
            process.stderr.write(`bench hook: main-thread profile not written: ${String(error)}\n`);
          }
          const deadline = Date.now() + workerProfileWaitMs;
          while ([...workerThreads].some((id) => !stoppedWorkers.has(id)) && Date.now() < deadline)
            await new Promise((resolve) => setTimeout(resolve, 20));
          for (const written of stoppedWorkers.values()) if (written !== undefined) files.push(written);
          process.send?.({ type: profileStopped, files });
        })();
        break;
      }
    }
  });
  // The bench died without stopping this child: shut down as if told to.
  process.once("disconnect", () => process.kill(process.pid, "SIGTERM"));
  // The IPC channel must not keep the server alive after it is told to stop.
  process.channel.unref();
} else if (!isMainThread) {
  // A worker thread of the server (for example a storage worker): profiles itself when the main thread says so.
  const profiler = new ThreadProfiler();
  const channel = new BroadcastChannel(profileChannelName);
  channel.unref();
  channel.onmessage = (event: unknown): void => {
    const message = (event as { data: WorkerMessage }).data;
    if (message.type === "gc") {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      if (gc) channel.postMessage({ type: "gc-done", threadId } satisfies WorkerMessage);
    } else if (message.type === "start") {
      void profiler.start().then(
        () => channel.postMessage({ type: "started", threadId } satisfies WorkerMessage),
        () => undefined,
      );
    } else if (message.type === "stop") {
      const file = message.file.replace(/\.cpuprofile$/, `.thread${threadId}.cpuprofile`);
      void profiler.stop(file).then(
        (written) => channel.postMessage({ type: "stopped", threadId, file: written ? file : undefined }),
        () => channel.postMessage({ type: "stopped", threadId, file: undefined } satisfies WorkerMessage),
      );
    }
  };
}
