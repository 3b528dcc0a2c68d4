/** A running stall monitor. */
export interface StallMonitor {
  stop(): void;
}

/**
 * Watches the event loop for stalls of at least `thresholdMs`. A timer ticks
 * every `intervalMs`; when a tick comes late by the threshold or more, the
 * loop was blocked, and `onStall` is called with how long (beyond the tick
 * interval) and when the previous tick ran (`performance.now()` time), so
 * the caller can find what ran in between. It runs when the loop is free
 * again: a stall is reported after the fact, never interrupted. The timer
 * is unref'd (it keeps no process alive).
 */
export function watchEventLoop(thresholdMs: number, onStall: (stallMs: number, since: number) => void): StallMonitor {
  // Ticks often enough that a stall just over the threshold is seen as one late tick.
  const intervalMs = Math.max(10, Math.min(250, Math.floor(thresholdMs / 4)));
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const late = now - last - intervalMs;
    const since = last;
    last = now;
    if (late >= thresholdMs) onStall(Math.round(late), since);
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
