import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  refusalCodePattern,
  type AccountRegisteredEvent,
  type AccountRegistrationCandidate,
  type DeviceLinkedEvent,
  type DeviceRemovedEvent,
  type EnvelopeCandidate,
  type EnvelopeDeliveredEvent,
  type HookName,
  type IdentityKeyChangedEvent,
  type KeysUploadedEvent,
  type PluginContext,
  type PluginRoute,
  type PluginStorage,
  type Refusal,
  type ServerHooks,
} from "@zimchat/plugin-sdk/server";
import { Router } from "express";
import { HttpError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { PluginStore } from "../stores/plugin-store.js";
import type { LoadedPlugin } from "./load-plugins.js";
import { PluginError, PluginTimeoutError, type PluginFailurePoint } from "./plugin-error.js";
import { PluginActivity } from "./plugin-activity.js";

/** Veto hooks and what they are asked about. */
export interface VetoHookPayloads {
  beforeAccountRegistered: AccountRegistrationCandidate;
  beforeEnvelopeAccepted: EnvelopeCandidate;
}

/** Observer hooks and the event each one gets. */
export interface ObserverHookPayloads {
  accountRegistered: AccountRegisteredEvent;
  deviceLinked: DeviceLinkedEvent;
  deviceRemoved: DeviceRemovedEvent;
  keysUploaded: KeysUploadedEvent;
  identityKeyChanged: IdentityKeyChangedEvent;
  envelopeDelivered: EnvelopeDeliveredEvent;
}

/** A veto hook's name. */
export type VetoHook = keyof VetoHookPayloads;
/** An observer hook's name. */
export type ObserverHook = keyof ObserverHookPayloads;

/**
 * Which way a failure (throw, timeout, malformed answer) of a veto hook
 * falls, as documented on `ServerHooks`: `closed` refuses with 503
 * `unavailable`, `open` accepts as if the plugin had not been asked.
 */
export const vetoFailure: Record<VetoHook, "closed" | "open"> = {
  beforeAccountRegistered: "closed",
  beforeEnvelopeAccepted: "open",
};

const hookNames: readonly HookName[] = [
  "start",
  "stop",
  "beforeAccountRegistered",
  "accountRegistered",
  "deviceLinked",
  "deviceRemoved",
  "keysUploaded",
  "identityKeyChanged",
  "beforeEnvelopeAccepted",
  "envelopeDelivered",
];

/** A route a plugin added, with the plugin's name. */
export interface MountedRoute {
  plugin: string;
  route: PluginRoute;
}

/** What {@link PluginHost.setUp} needs besides the loaded plugins. */
export interface PluginHostOptions {
  logger: Logger;
  serverName: string;
  /** The server's data directory; each plugin gets `<dataDir>/plugins/<name>` (mode 0700). */
  dataDir: string;
  /** Budget of one plugin for one hook call (all recipients of a send together) and one route request. */
  hookTimeoutMs: number;
  /** Budget of one plugin's `setup`, `start` and `stop`. */
  startTimeoutMs: number;
  /** Where plugins' storage lives. */
  store: PluginStore;
}

interface Entry {
  name: string;
  hooks: ServerHooks;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}

/**
 * Runs server plugins: sets them up, starts and stops them, and calls their
 * hooks with a time budget per plugin and the failure semantics of
 * `ServerHooks` (see {@link vetoFailure}). A failure is logged with the
 * plugin's name, the hook and the error, never with the payload. With no
 * plugins (or none implementing a hook) every call returns at once.
 *
 * @example
 * const host = await PluginHost.setUp(await loadPlugins(config.plugins), options);
 * await host.start();
 * await host.ask("beforeEnvelopeAccepted", candidates); // throws HttpError 403 refused_by_plugin on a refusal
 * await host.emit("keysUploaded", event);              // never throws
 */
export class PluginHost {
  private readonly byHook = new Map<HookName, Entry[]>();
  private started: Entry[] = [];
  /** Which plugin code runs or is pending, for the event-loop stall monitor. */
  readonly activity = new PluginActivity();

  private constructor(
    private readonly entries: Entry[],
    /** Routes the plugins added during setup. */
    readonly routes: readonly MountedRoute[],
    private readonly logger: Logger | null,
    /** Budget of one plugin for one hook call or route request, in ms. */
    readonly hookTimeoutMs: number,
    private readonly startTimeoutMs: number,
  ) {
    for (const hook of hookNames)
      this.byHook.set(
        hook,
        entries.filter((e) => typeof e.hooks[hook] === "function"),
      );
  }

  /** A host without plugins: every hook is a no-op. */
  static empty(): PluginHost {
    return new PluginHost([], [], null, 1000, 1000);
  }

  /**
   * Gives each plugin its context (name, data directory, logger, storage,
   * `route`) and runs its `setup`, in config order.
   * @throws PluginError when a setup throws, times out or returns something that is not hooks
   */
  static async setUp(loaded: readonly LoadedPlugin[], options: PluginHostOptions): Promise<PluginHost> {
    const entries: Entry[] = [];
    const routes: MountedRoute[] = [];
    for (const { plugin, config } of loaded) {
      const name = plugin.name;
      const dataDir = join(options.dataDir, "plugins", name);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      // mkdir's mode is filtered by the umask and ignored for existing directories.
      chmodSync(join(options.dataDir, "plugins"), 0o700);
      chmodSync(dataDir, 0o700);
      let settingUp = true;
      const context: PluginContext = {
        name,
        serverName: options.serverName,
        dataDir,
        logger: options.logger.child({ plugin: name }),
        storage: options.store.storageFor(name) satisfies PluginStorage,
        route(route) {
          if (!settingUp) throw new PluginError(name, "setup", "ctx.route() must be called during setup");
          routes.push({ plugin: name, route: checkRoute(name, route) });
        },
      };
      let outcome: Outcome<unknown>;
      try {
        outcome = await settle(() => plugin.setup(context, config), options.startTimeoutMs);
      } finally {
        settingUp = false;
      }
      if (!outcome.ok) {
        // ctx.route's own refusals already name the plugin.
        if (outcome.error instanceof PluginError) throw outcome.error;
        throw new PluginError(name, "setup", describe(outcome.error), { cause: outcome.error });
      }
      entries.push({ name, hooks: checkHooks(name, outcome.value) });
    }
    return new PluginHost(entries, routes, options.logger, options.hookTimeoutMs, options.startTimeoutMs);
  }

  /** The plugins' names, in config order. */
  get names(): string[] {
    return this.entries.map((e) => e.name);
  }

  /** Whether any plugin implements `hook` (callers skip building a payload when none does). */
  has(hook: HookName): boolean {
    return (this.byHook.get(hook)?.length ?? 0) > 0;
  }

  /**
   * Calls every `start` hook in config order. If one fails, the plugins
   * already started are stopped (in reverse order) and start-up stops.
   * @throws PluginError naming the plugin
   */
  async start(): Promise<void> {
    for (const entry of this.entries) {
      if (entry.hooks.start) {
        const outcome = await settle(
          () => this.activity.run({ plugin: entry.name, hook: "start" }, () => entry.hooks.start!()),
          this.startTimeoutMs,
        );
        if (!outcome.ok) {
          await this.stop();
          throw new PluginError(entry.name, "start", describe(outcome.error), { cause: outcome.error });
        }
      }
      this.started.push(entry);
    }
  }

  /** Calls the `stop` hook of every started plugin, in reverse order; a failure is logged and the others still stop. */
  async stop(): Promise<void> {
    const started = this.started.reverse();
    this.started = [];
    for (const entry of started) {
      if (!entry.hooks.stop) continue;
      const outcome = await settle(
        () => this.activity.run({ plugin: entry.name, hook: "stop" }, () => entry.hooks.stop!()),
        this.startTimeoutMs,
      );
      if (!outcome.ok) this.logFailure(entry.name, "stop", outcome.error);
    }
  }

  /**
   * Asks a veto hook about each candidate (a send asks once per recipient
   * account), plugin by plugin in config order. Each plugin has one time
   * budget for all the candidates; a plugin that fails is not asked again
   * for this call. The first refusal answers.
   * @throws HttpError 403 `refused_by_plugin` on a refusal; 503 `unavailable`
   *   when a fail-closed hook (`beforeAccountRegistered`) fails
   */
  async ask<H extends VetoHook>(hook: H, candidates: readonly VetoHookPayloads[H][]): Promise<void> {
    const entries = this.byHook.get(hook)!;
    for (const entry of entries) {
      const deadline = performance.now() + this.hookTimeoutMs;
      for (const candidate of candidates) {
        const fn = entry.hooks[hook] as (c: VetoHookPayloads[H]) => Refusal | void | Promise<Refusal | void>;
        const outcome = await settle(
          () => this.activity.run({ plugin: entry.name, hook }, () => fn.call(entry.hooks, frozenCopy(candidate))),
          Math.max(0, deadline - performance.now()),
        );
        let refusal: Refusal | null = null;
        let failure: unknown = outcome.ok ? null : outcome.error;
        if (outcome.ok) {
          try {
            refusal = checkRefusal(outcome.value);
          } catch (error) {
            failure = error;
          }
        }
        if (failure !== null) {
          this.logFailure(entry.name, hook, failure);
          if (vetoFailure[hook] === "closed")
            throw new HttpError("unavailable", "A server plugin could not decide; try again later");
          break; // Fails open: this plugin is skipped for the rest of the candidates.
        }
        if (refusal) throw refused(entry.name, refusal);
      }
    }
  }

  /**
   * Tells every plugin that implements an observer hook, concurrently, each
   * within its budget. Resolves when all have finished or failed; failures
   * are logged, never thrown. Callers await it after their commit
   * (`envelopeDelivered` is not awaited).
   */
  emit<H extends ObserverHook>(hook: H, event: ObserverHookPayloads[H]): Promise<void> {
    const entries = this.byHook.get(hook)!;
    if (!entries.length) return Promise.resolve();
    const frozen = frozenCopy(event);
    return Promise.all(
      entries.map(async (entry) => {
        const fn = entry.hooks[hook] as (e: ObserverHookPayloads[H]) => unknown;
        const outcome = await settle(
          () => this.activity.run({ plugin: entry.name, hook }, () => fn.call(entry.hooks, frozen)),
          this.hookTimeoutMs,
        );
        if (!outcome.ok) this.logFailure(entry.name, hook, outcome.error);
      }),
    ).then(() => undefined);
  }

  /** Logs a plugin failure: the plugin, the hook and the error (never the payload). */
  logFailure(plugin: string, hook: PluginFailurePoint, error: unknown): void {
    if (error instanceof PluginTimeoutError) {
      this.logger?.error({ plugin, hook, timeoutMs: error.timeoutMs }, `plugin "${plugin}" timed out in ${hook}`);
    } else {
      this.logger?.error({ plugin, hook, err: error }, `plugin "${plugin}" failed in ${hook}`);
    }
  }
}

/**
 * Runs a plugin call within `timeoutMs`. A synchronous answer returns without
 * a timer; a promise races one. A call that overruns is abandoned (its
 * promise keeps running, its answer is ignored).
 */
export async function settle<T>(call: () => T | PromiseLike<T>, timeoutMs: number): Promise<Outcome<T>> {
  let result: T | PromiseLike<T>;
  try {
    result = call();
  } catch (error) {
    return { ok: false, error };
  }
  if (!isThenable(result)) return { ok: true, value: result };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, error: new PluginTimeoutError(timeoutMs) }), timeoutMs);
  });
  try {
    return await Promise.race([
      Promise.resolve(result).then(
        (value): Outcome<T> => ({ ok: true, value }),
        (error: unknown): Outcome<T> => ({ ok: false, error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A veto hook's answer as a refusal, or null for "accept". @throws Error when the answer is neither */
function checkRefusal(value: unknown): Refusal | null {
  if (value === undefined || value === null) return null;
  const r = value as Partial<Refusal>;
  if (typeof value !== "object") throw new Error(`returned ${typeof value}, not a refusal or nothing`);
  if (typeof r.code !== "string" || !refusalCodePattern.test(r.code)) {
    throw new Error(
      `returned a refusal whose code ${JSON.stringify(r.code)?.slice(0, 80)} does not match ${refusalCodePattern}`,
    );
  }
  if (typeof r.reason !== "string" || r.reason.length === 0 || r.reason.length > 500)
    throw new Error("returned a refusal without a reason (1..500 characters)");
  if (r.retryAfterSeconds !== undefined && (!Number.isSafeInteger(r.retryAfterSeconds) || r.retryAfterSeconds < 0)) {
    throw new Error("returned a refusal whose retryAfterSeconds is not a whole number of seconds");
  }
  return {
    code: r.code,
    reason: r.reason,
    ...(r.retryAfterSeconds !== undefined ? { retryAfterSeconds: r.retryAfterSeconds } : {}),
  };
}

/** The answer to a plugin's refusal: 403 `refused_by_plugin` with the plugin's name and code. */
export function refused(plugin: string, refusal: Refusal): HttpError {
  const retry = refusal.retryAfterSeconds;
  return new HttpError(
    "refused_by_plugin",
    refusal.reason,
    { plugin, pluginCode: refusal.code, ...(retry !== undefined ? { retryAfterSeconds: retry } : {}) },
    retry !== undefined ? { "Retry-After": String(retry) } : {},
  );
}

function checkHooks(plugin: string, value: unknown): ServerHooks {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object")
    throw new PluginError(plugin, "setup", `setup returned ${typeof value}, not an object of hooks`);
  for (const [key, fn] of Object.entries(value)) {
    if (!hookNames.includes(key as HookName))
      throw new PluginError(
        plugin,
        "setup",
        `setup returned an unknown hook "${key}" (hooks: ${hookNames.join(", ")})`,
      );
    if (fn !== undefined && typeof fn !== "function")
      throw new PluginError(plugin, "setup", `hook "${key}" is not a function`);
  }
  return value as ServerHooks;
}

const routeMethods = new Set(["GET", "POST", "PUT", "DELETE"]);

function checkRoute(plugin: string, route: PluginRoute): PluginRoute {
  const where = `route ${JSON.stringify(route?.method)} ${JSON.stringify(route?.path)}`;
  if (!routeMethods.has(route?.method))
    throw new PluginError(plugin, "setup", `${where}: method must be GET, POST, PUT or DELETE`);
  if (typeof route.path !== "string" || !route.path.startsWith("/") || route.path.length > 200) {
    throw new PluginError(plugin, "setup", `${where}: path must start with / (it is relative to /plugins/${plugin})`);
  }
  if (route.auth !== undefined && route.auth !== "none" && route.auth !== "device")
    throw new PluginError(plugin, "setup", `${where}: auth must be "none" or "device"`);
  if (typeof route.handler !== "function")
    throw new PluginError(plugin, "setup", `${where}: handler must be a function`);
  try {
    // Express's own parser decides what a path may hold; a bad one names the plugin here rather than failing later.
    Router()[route.method.toLowerCase() as "get"](route.path, () => {});
  } catch (error) {
    throw new PluginError(plugin, "setup", `${where}: ${describe(error)}`, { cause: error });
  }
  return { ...route };
}

/** A shallow frozen copy: one plugin cannot change what the next one sees. */
function frozenCopy<T extends object>(value: T): T {
  return Object.freeze({ ...value });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
