/** Resolves after `ms`, or earlier on Ctrl-C (SIGINT) or SIGTERM. */
export function untilInterrupted(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
  });
}
