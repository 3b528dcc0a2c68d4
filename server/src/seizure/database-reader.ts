import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import pg from "pg";
import type { DatabaseTarget } from "../db/database-url.js";

/** A table's columns as the database itself reports them. */
export interface TableShape {
  name: string;
  columns: { name: string; type: string }[];
}

/**
 * Read-only access to a ZimChat database with the bare driver, the way
 * someone who seized it would look at it: no migrations, no Prisma, no
 * writes (SQLite is read from a private copy, PostgreSQL sessions are read-only).
 * SQL is written with `?` placeholders and `"quoted"` identifiers, which both
 * dialects accept; {@link DatabaseReader.dialect} covers the rest.
 */
export interface DatabaseReader {
  readonly provider: DatabaseTarget["provider"];
  /** Where the data is: a file path, or a PostgreSQL schema name. */
  readonly location: string;
  all<T>(sql: string, params?: unknown[]): Promise<T[]>;
  /** The base tables and their columns, from sqlite_master / information_schema. */
  tables(): Promise<TableShape[]>;
  /** The sequences (PostgreSQL) with their current value; none on SQLite. */
  sequences(): Promise<{ name: string; value: number }[]>;
  /** Dialect pieces: the first byte of a binary column as upper-case hex. */
  readonly dialect: { firstByteHex(column: string): string };
  close(): Promise<void>;
}

/** Thrown when the database cannot be opened for reading. */
export class DatabaseReadError extends Error {
  override name = "DatabaseReadError";
}

/** Opens the database named by `target` for reading only. */
export async function openReader(target: DatabaseTarget): Promise<DatabaseReader> {
  return target.provider === "sqlite" ? openSqlite(target.path) : openPostgres(target.connectionString, target.schema);
}

/**
 * Opens a SQLite database without writing next to it. Even a read-only
 * connection to a WAL database creates `-shm` (and `-wal`) files beside it,
 * and this build of SQLite takes no `immutable=1` URI; so the database and
 * its WAL are copied byte for byte into a private temporary directory
 * (mode 0700) and the copy is opened: the WAL's rows are seen, the
 * inspected directory is never written. The copy is removed on close.
 */
function openSqlite(path: string): DatabaseReader {
  if (!existsSync(path))
    throw new DatabaseReadError(`no SQLite database at ${path} (pass --data-dir or --database-url)`);
  const scratch = mkdtempSync(join(tmpdir(), "zimchat-seizure-"));
  let db: BetterSqlite3.Database;
  try {
    const copy = join(scratch, "copy.db");
    copyFileSync(path, copy);
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
    db = new BetterSqlite3(copy, { fileMustExist: true });
    // Reads only; the WAL is replayed into the private copy, never into the original.
    db.pragma("query_only = ON");
  } catch (error) {
    rmSync(scratch, { recursive: true, force: true });
    throw new DatabaseReadError(`cannot read the SQLite database at ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const all = async <T>(sql: string, params: unknown[] = []): Promise<T[]> => db.prepare(sql).all(...params) as T[];
  return {
    provider: "sqlite",
    location: path,
    all,
    async tables() {
      const names = await all<{ name: string }>(
        `SELECT "name" FROM sqlite_master WHERE "type" = 'table' ORDER BY "name"`,
      );
      return Promise.all(
        names.map(async ({ name }) => ({
          name,
          columns: (
            await all<{ name: string; type: string }>(
              `SELECT "name", "type" FROM pragma_table_info(?) ORDER BY "cid"`,
              [name],
            )
          ).map((c) => ({
            name: c.name,
            type: c.type.toLowerCase(),
          })),
        })),
      );
    },
    async sequences() {
      return [];
    },
    dialect: { firstByteHex: (column) => `hex(substr(${column}, 1, 1))` },
    async close() {
      db.close();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}

async function openPostgres(connectionString: string, schema: string): Promise<DatabaseReader> {
  const client = new pg.Client({
    connectionString,
    options: `-c search_path="${schema}" -c default_transaction_read_only=on`,
  });
  try {
    await client.connect();
  } catch (error) {
    throw new DatabaseReadError(`cannot connect to PostgreSQL: ${(error as Error).message}`, { cause: error });
  }
  const all = async <T>(sql: string, params: unknown[] = []): Promise<T[]> => {
    let n = 0;
    return (
      await client.query(
        sql.replace(/\?/g, () => `$${++n}`),
        params,
      )
    ).rows as T[];
  };
  return {
    provider: "postgresql",
    location: `schema ${schema}`,
    all,
    async tables() {
      const rows = await all<{ table_name: string; column_name: string; data_type: string }>(
        `SELECT c."table_name", c."column_name", c."data_type" FROM information_schema.columns c
         JOIN information_schema.tables t ON t."table_schema" = c."table_schema" AND t."table_name" = c."table_name"
         WHERE c."table_schema" = ? AND t."table_type" = 'BASE TABLE' ORDER BY c."table_name", c."ordinal_position"`,
        [schema],
      );
      const tables = new Map<string, TableShape>();
      for (const row of rows) {
        const table = tables.get(row.table_name) ?? { name: row.table_name, columns: [] };
        table.columns.push({ name: row.column_name, type: row.data_type.toLowerCase() });
        tables.set(row.table_name, table);
      }
      return [...tables.values()];
    },
    async sequences() {
      const names = await all<{ sequence_name: string }>(
        `SELECT "sequence_name" FROM information_schema.sequences WHERE "sequence_schema" = ? ORDER BY 1`,
        [schema],
      );
      return Promise.all(
        names.map(async ({ sequence_name: name }) => {
          const [row] = await all<{ last_value: string; is_called: boolean }>(
            `SELECT "last_value", "is_called" FROM "${name.replace(/"/g, '""')}"`,
          );
          return { name, value: row?.is_called ? Number(row.last_value) : 0 };
        }),
      );
    },
    dialect: { firstByteHex: (column) => `upper(encode(substr(${column}, 1, 1), 'hex'))` },
    async close() {
      await client.end();
    },
  };
}
