import { createRequire } from "node:module";
import { isAbsolute, join } from "node:path";
import { pathToFileURL } from "node:url";
import { pluginNamePattern, type ServerPlugin } from "@zimchat/plugin-sdk/server";
import type { z } from "zod";
import { ConfigError, type PluginSpec } from "../config.js";

/** A plugin module imported and checked, with its config validated by its own schema. */
export interface LoadedPlugin {
  plugin: ServerPlugin;
  /** The config after the plugin's `configSchema` (defaults filled in). */
  config: unknown;
}

/**
 * Imports every plugin listed in the config, checks that each is a
 * `ServerPlugin`, validates its config with the plugin's own `configSchema`,
 * and refuses duplicate names. Paths must already be absolute
 * (`resolveConfig` and the CLI make them so); package names resolve from the
 * server's own installation, then from the working directory.
 * @throws ConfigError naming the plugin (and the config field at fault)
 */
export async function loadPlugins(specs: readonly PluginSpec[]): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = [];
  const seen = new Map<string, number>();
  for (const [i, spec] of specs.entries()) {
    const plugin = typeof spec.use === "string" ? await importPlugin(spec.use) : spec.use;
    const what = typeof spec.use === "string" ? `plugin module "${spec.use}"` : `plugins[${i}]`;
    checkPlugin(plugin, what);
    const first = seen.get(plugin.name);
    if (first !== undefined)
      throw new ConfigError(
        `plugin "${plugin.name}" is listed twice (plugins[${first}] and plugins[${i}]); each plugin may run once`,
      );
    seen.set(plugin.name, i);
    loaded.push({ plugin, config: await validateConfig(plugin, spec.config) });
  }
  return loaded;
}

/** Imports a module by package name or absolute path and picks its plugin export. */
async function importPlugin(use: string): Promise<ServerPlugin> {
  let module: Record<string, unknown>;
  try {
    module = await importModule(use);
  } catch (error) {
    throw new ConfigError(`plugin module "${use}" cannot be loaded: ${(error as Error)?.message ?? String(error)}`, {
      cause: error,
    });
  }
  const plugin = module.default ?? module.plugin;
  checkPlugin(plugin, `plugin module "${use}"`, "its default export (or export named `plugin`)");
  return plugin;
}

async function importModule(use: string): Promise<Record<string, unknown>> {
  if (isAbsolute(use)) return (await import(pathToFileURL(use).href)) as Record<string, unknown>;
  try {
    return (await import(use)) as Record<string, unknown>;
  } catch (error) {
    if ((error as { code?: string }).code !== "ERR_MODULE_NOT_FOUND") throw error;
    // Not installed beside the server: a package installed where the server is run from.
    let path: string;
    try {
      path = createRequire(join(process.cwd(), "zimchat-plugin-resolver.js")).resolve(use);
    } catch {
      throw error;
    }
    return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  }
}

/** Checks the shape of a plugin object. @throws ConfigError */
function checkPlugin(value: unknown, what: string, part = "it"): asserts value is ServerPlugin {
  const plugin = value as Partial<ServerPlugin> | null | undefined;
  if (
    typeof plugin !== "object" ||
    plugin === null ||
    typeof plugin.setup !== "function" ||
    typeof plugin.configSchema?.safeParseAsync !== "function"
  ) {
    throw new ConfigError(
      `${what}: ${part} is not a server plugin (an object with name, configSchema and setup, e.g. from definePlugin)`,
    );
  }
  if (typeof plugin.name !== "string" || !pluginNamePattern.test(plugin.name)) {
    throw new ConfigError(`${what}: the plugin name ${JSON.stringify(plugin.name)} must match ${pluginNamePattern}`);
  }
}

/** Validates a plugin's config with its schema. @throws ConfigError `plugin "name": config.field: problem` */
async function validateConfig(plugin: ServerPlugin, config: unknown): Promise<unknown> {
  let result: z.ZodSafeParseResult<unknown>;
  try {
    result = await plugin.configSchema.safeParseAsync(config ?? {});
  } catch (error) {
    throw new ConfigError(
      `plugin "${plugin.name}": its configSchema threw: ${(error as Error)?.message ?? String(error)}`,
      { cause: error },
    );
  }
  if (result.success) return result.data;
  const problems = result.error.issues
    .slice(0, 5)
    .map((issue) => `${configPath(issue.path)}: ${issue.message.replace(/^Invalid input: /, "")}`);
  const more = result.error.issues.length > 5 ? ` (and ${result.error.issues.length - 5} more)` : "";
  throw new ConfigError(`plugin "${plugin.name}": ${problems.join("; ")}${more}`);
}

/** `config.a.b[0]` for a zod issue path. */
function configPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (out, part) => (typeof part === "number" ? `${out}[${part}]` : `${out}.${String(part)}`),
    "config",
  );
}
