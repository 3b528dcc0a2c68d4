/**
 * Preloaded into each server child (`node --expose-gc --import gc-hook.js`)
 * so the bench can ask for a full garbage collection over the IPC channel
 * before it reads the child's RSS, and so a child whose bench process died
 * shuts down instead of lingering. It changes nothing else in the server.
 */

/** The request the bench sends over IPC. */
export const gcRequest = "bench:gc";
/** The answer: whether a collection actually ran (needs `--expose-gc`), and `process.memoryUsage()` after it. */
export const gcDone = "bench:gc-done";

const gc = (globalThis as { gc?: () => void }).gc;

if (process.channel !== undefined) {
  process.on("message", (message: unknown) => {
    if (typeof message !== "object" || message === null || (message as { type?: unknown }).type !== gcRequest) return;
    // Two passes: the first may only schedule finalizers for native handles.
    gc?.();
    gc?.();
    process.send?.({ type: gcDone, collected: gc !== undefined, memory: process.memoryUsage() });
  });
  // The bench died without stopping this child: shut down as if told to.
  process.once("disconnect", () => process.kill(process.pid, "SIGTERM"));
  // The IPC channel must not keep the server alive after it is told to stop.
  process.channel.unref();
}
