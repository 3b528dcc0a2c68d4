/** Where a plugin failed: one of its hooks, its `setup`, or a route handler. */
export type PluginFailurePoint = "setup" | "route" | import("@zimchat/plugin-sdk/server").HookName;

/**
 * A plugin failed (threw, timed out, or answered something malformed) at a
 * point that stops start-up: `setup` or `start`. The message names the
 * plugin and the hook; the plugin's own error is the `cause`.
 */
export class PluginError extends Error {
  override name = "PluginError";

  constructor(
    readonly plugin: string,
    readonly hook: PluginFailurePoint,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`plugin "${plugin}" failed in ${hook}: ${message}`, options);
  }
}

/** A plugin call took longer than its time budget. */
export class PluginTimeoutError extends Error {
  override name = "PluginTimeoutError";

  constructor(readonly timeoutMs: number) {
    super(`did not finish within ${timeoutMs} ms`);
  }
}
