/** Which plugin code was running: the plugin's name and the hook (or `route`, `start`, …). */
export interface PluginCall {
  plugin: string;
  hook: string;
}

/** The longest synchronous plugin run seen lately. */
interface LongRun extends PluginCall {
  ms: number;
  endedAt: number;
}

/** Runs shorter than this are not remembered: they cannot explain a stall worth logging. */
const rememberFromMs = 20;

/**
 * Where the event loop is when it is inside plugin code. A synchronous busy
 * loop cannot be interrupted, so the plugin host records each entry into a
 * plugin (its synchronous part, timed) and each plugin promise still
 * pending; the stall monitor asks afterwards who was running. A run that
 * blocked the loop is known exactly; a stall after a plugin's `await` can
 * only be pinned on the plugins with calls in flight.
 */
export class PluginActivity {
  private lastLong: LongRun | null = null;
  private readonly pending = new Map<number, PluginCall>();
  /** Calls that settled lately: a busy loop at the end of an async hook settles it before the stall is seen. */
  private settled: { call: PluginCall; at: number }[] = [];
  private nextId = 0;

  /**
   * Runs `fn` (the synchronous part of a plugin call) and times it; if it returns a promise, tracks it until it
   * settles.
   */
  run<T>(call: PluginCall, fn: () => T): T {
    const started = performance.now();
    let result: T;
    try {
      result = fn();
    } finally {
      const endedAt = performance.now();
      const ms = endedAt - started;
      // Keep the longest recent run; an old one gives way after a second.
      if (
        ms >= rememberFromMs &&
        (!this.lastLong || ms >= this.lastLong.ms || endedAt - this.lastLong.endedAt > 1000)
      ) {
        this.lastLong = { ...call, ms, endedAt };
      }
    }
    if (typeof (result as { then?: unknown } | null)?.then === "function") {
      const id = this.nextId++;
      this.pending.set(id, call);
      const done = (): void => {
        this.pending.delete(id);
        const at = performance.now();
        // Kept for a few seconds, at most 100: enough for the next monitor tick.
        this.settled = this.settled.filter((s) => at - s.at < 5000).slice(-99);
        this.settled.push({ call, at });
      };
      (result as PromiseLike<unknown>).then(done, done);
    }
    return result;
  }

  /**
   * Who to blame for a stall of `stallMs` that ended now and began after
   * `since` (a `performance.now()` time): the synchronous run that ended in
   * that window and took at least half the stall, else the one plugin call
   * in flight during the window, else null (the stall was the server's own, or several
   * plugins were in flight: `suspects`).
   */
  blame(since: number, stallMs: number): { culprit: (PluginCall & { exact: boolean }) | null; suspects: PluginCall[] } {
    // In flight during the stall: still pending, or settled since it began.
    const inFlight = [...this.pending.values(), ...this.settled.filter((s) => s.at >= since).map((s) => s.call)];
    const suspects = [...new Map(inFlight.map((c) => [`${c.plugin}\0${c.hook}`, c])).values()];
    if (this.lastLong && this.lastLong.endedAt >= since && this.lastLong.ms >= stallMs / 2) {
      const { plugin, hook } = this.lastLong;
      return { culprit: { plugin, hook, exact: true }, suspects };
    }
    const plugins = new Set(suspects.map((s) => s.plugin));
    if (plugins.size === 1 && suspects.length === 1) return { culprit: { ...suspects[0]!, exact: false }, suspects };
    return { culprit: null, suspects };
  }
}
