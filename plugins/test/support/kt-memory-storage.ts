/**
 * A small in-memory PluginStorage and PluginContext for unit tests of
 * server plugins, until the homeserver hosts them in tests of its own.
 * Keys are ordered by code point, like the server's storage.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  storageLimits,
  type PluginContext,
  type PluginRequest,
  type PluginResponse,
  type PluginRoute,
  type PluginStorage,
  type ServerHooks,
  type ServerPlugin,
} from "@zimchat/plugin-sdk/server";

/** A PluginStorage in a Map, with the host's limits. `entries` is exposed so a test can tamper with it. */
export class MemoryPluginStorage implements PluginStorage {
  readonly entries = new Map<string, string>();

  async get(key: string): Promise<string | null> {
    return this.entries.get(key) ?? null;
  }

  async set(key: string, value: string): Promise<void> {
    if (!key || key.length > storageLimits.maxKeyLength) throw new RangeError(`bad key ${key}`);
    if (Buffer.byteLength(value) > storageLimits.maxValueBytes) throw new RangeError("value too large");
    // Let other work run in between, as a database round trip would.
    await new Promise((resolve) => setImmediate(resolve));
    this.entries.set(key, value);
  }

  async delete(key: string): Promise<boolean> {
    return this.entries.delete(key);
  }

  async list(
    prefix: string,
    options: { after?: string; limit?: number } = {},
  ): Promise<{ key: string; value: string }[]> {
    const limit = options.limit ?? storageLimits.maxListLimit;
    if (limit < 1 || limit > storageLimits.maxListLimit) throw new RangeError("bad limit");
    return [...this.entries.keys()]
      .filter((k) => k.startsWith(prefix) && (options.after === undefined || k > options.after))
      .sort()
      .slice(0, limit)
      .map((key) => ({ key, value: this.entries.get(key)! }));
  }
}

/** A plugin set up and started on given storage and data directory, its routes callable by method and path. */
export interface StartedPlugin {
  hooks: ServerHooks;
  /** The routes it added, as declared. */
  routes: PluginRoute[];
  storage: MemoryPluginStorage;
  dataDir: string;
  call(method: PluginRoute["method"], path: string, query?: Record<string, string>): Promise<PluginResponse>;
}

/** Sets up a plugin with its config (validated by its schema) and runs its `start` hook. */
export async function startPlugin<C>(
  plugin: ServerPlugin<C>,
  config: unknown = {},
  options: { storage?: MemoryPluginStorage; dataDir?: string } = {},
): Promise<StartedPlugin> {
  const storage = options.storage ?? new MemoryPluginStorage();
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "zimchat-plugin-"));
  const routes: PluginRoute[] = [];
  const quiet = (): void => {};
  const context: PluginContext = {
    name: plugin.name,
    serverName: "localhost",
    dataDir,
    logger: { debug: quiet, info: quiet, warn: quiet, error: quiet },
    storage,
    route: (route) => void routes.push(route),
  };
  const hooks = await plugin.setup(context, plugin.configSchema.parse(config));
  await hooks.start?.();
  return {
    hooks,
    routes,
    storage,
    dataDir,
    async call(method, path, query = {}) {
      const route = routes.find((r) => r.method === method && r.path === path);
      if (!route) throw new Error(`no route ${method} ${path}`);
      const request: PluginRequest = { params: {}, query, body: undefined, device: null };
      return route.handler(request);
    },
  };
}
