import { storageLimits, type PluginStorage } from "@zimchat/plugin-sdk/server";
import type { Db } from "../db/database.js";
import { Prisma } from "../generated/prisma-sqlite/client.js";

type Provider = "sqlite" | "postgresql";

/** A plugin asked its storage for something outside {@link storageLimits} (the message says which limit). */
export class PluginStorageError extends RangeError {
  override name = "PluginStorageError";
}

function checkKey(key: unknown, what = "key"): string {
  if (typeof key !== "string") throw new PluginStorageError(`plugin storage: ${what} must be a string`);
  if (key.length > storageLimits.maxKeyLength) {
    throw new PluginStorageError(
      `plugin storage: ${what} is ${key.length} characters, the limit is ${storageLimits.maxKeyLength}`,
    );
  }
  // PostgreSQL text cannot hold NUL; refuse it on both providers alike.
  if (key.includes("\u0000")) throw new PluginStorageError(`plugin storage: ${what} contains a NUL character`);
  return key;
}

/**
 * Server plugins' key-value storage (the `PluginEntry` table), one namespace
 * per plugin name. Keys are ordered by code point (UTF-8 byte order): SQLite's
 * default collation, and `COLLATE "C"` on PostgreSQL whatever the database's
 * locale, so listing and paging behave the same on both.
 */
export class PluginStore {
  constructor(
    private readonly db: Db,
    private readonly provider: Provider,
  ) {}

  /**
   * The storage handed to one plugin: every call is confined to `plugin`'s
   * namespace and checked against {@link storageLimits}.
   * @throws PluginStorageError (as a rejection) for a key, value or limit out of bounds
   */
  storageFor(plugin: string): PluginStorage {
    return {
      get: async (key) => {
        const row = await this.db.pluginEntry.findUnique({
          where: { plugin_key: { plugin, key: checkKey(key) } },
          select: { value: true },
        });
        return row?.value ?? null;
      },
      set: async (key, value) => {
        checkKey(key);
        if (key.length === 0) throw new PluginStorageError("plugin storage: key must not be empty");
        if (typeof value !== "string")
          throw new PluginStorageError("plugin storage: value must be a string (serialize it, e.g. JSON.stringify)");
        const bytes = Buffer.byteLength(value, "utf8");
        if (bytes > storageLimits.maxValueBytes) {
          throw new PluginStorageError(
            `plugin storage: the value of "${key}" is ${bytes} bytes of UTF-8, the limit is ${storageLimits.maxValueBytes}`,
          );
        }
        if (value.includes("\u0000"))
          throw new PluginStorageError(`plugin storage: the value of "${key}" contains a NUL character`);
        await this.db.pluginEntry.upsert({
          where: { plugin_key: { plugin, key } },
          create: { plugin, key, value },
          update: { value },
        });
      },
      delete: async (key) => {
        const { count } = await this.db.pluginEntry.deleteMany({ where: { plugin, key: checkKey(key) } });
        return count > 0;
      },
      list: async (prefix, options = {}) => {
        checkKey(prefix, "prefix");
        if (options.after !== undefined) checkKey(options.after, "after");
        const limit = options.limit ?? storageLimits.maxListLimit;
        if (!Number.isInteger(limit) || limit < 1 || limit > storageLimits.maxListLimit) {
          throw new PluginStorageError(
            `plugin storage: list limit must be a whole number from 1 to ${storageLimits.maxListLimit}, not ${String(limit)}`,
          );
        }
        return this.list(plugin, prefix, options.after, limit);
      },
    };
  }

  /** Entries of `plugin` whose key starts with `prefix`, after `after`, in code-point order. */
  private async list(
    plugin: string,
    prefix: string,
    after: string | undefined,
    limit: number,
  ): Promise<{ key: string; value: string }[]> {
    const key = Prisma.raw(this.provider === "postgresql" ? `"key" COLLATE "C"` : `"key"`);
    // The prefix test compares the key's first characters (SQL counts code points): no LIKE, so `%` and `_` are plain
    // characters.
    const length = [...prefix].length;
    const head = Prisma.raw(this.provider === "postgresql" ? `left("key", ${length})` : `substr("key", 1, ${length})`);
    const startsWith = Prisma.sql`${head} = ${prefix}`;
    const afterClause = after === undefined ? Prisma.empty : Prisma.sql`AND ${key} > ${after}`;
    const rows = await this.db.$queryRaw<{ key: string; value: string }[]>`
      SELECT "key", "value" FROM "PluginEntry"
      WHERE "plugin" = ${plugin} AND ${startsWith} ${afterClause}
      ORDER BY ${key} LIMIT ${limit}`;
    return rows.map((r) => ({ key: r.key, value: r.value }));
  }
}
