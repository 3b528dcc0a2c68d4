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
  private nextId = 0;

  /** Runs `fn` (the synchronous part of a plugin call) and times it; if it returns a promise, tracks it until it settles. */
  run<T>(call: PluginCall, fn: () => T): T {
    const started = performance.now();
    let result: T;
    try {
      result = fn();
    } finally {
      const endedAt = performance.now();
      const ms = endedAt - started;
      // Keep the longest recent run; an old one gives way after a second.
      if (ms >= rememberFromMs && (!this.lastLong || ms >= this.lastLong.ms || endedAt - this.lastLong.endedAt > 1000)) {
        this.lastLong = { ...call, ms, endedAt };
      }
    }
    if (typeof (result as { then?: unknown } | null)?.then === "function") {
      const id = this.nextId++;
      this.pending.set(id, call);
      const done = (): void => void this.pending.delete(id);
      (result as PromiseLike<unknown>).then(done, done);
    }
    return result;
  }

  /**
   * Who to blame for a stall of the loop that ended now and began after
   * `since` (a `performance.now()` time): the synchronous run that ended in
   * that window, else the one plugin with calls in flight, else null (the
   * stall was the server's own, or several plugins were in flight: `suspects`).
   */
  blame(since: number): { culprit: (PluginCall & { exact: boolean }) | null; suspects: PluginCall[] } {
    const suspects = [...new Map([...this.pending.values()].map((c) => [`${c.plugin}\0${c.hook}`, c])).values()];
    if (this.lastLong && this.lastLong.endedAt >= since) {
      const { plugin, hook } = this.lastLong;
      return { culprit: { plugin, hook, exact: true }, suspects };
    }
    const plugins = new Set(suspects.map((s) => s.plugin));
    if (plugins.size === 1 && suspects.length === 1) return { culprit: { ...suspects[0]!, exact: false }, suspects };
    return { culprit: null, suspects };
  }
}
