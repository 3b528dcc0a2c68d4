/**
 * Reads (and, for tampering tests, writes) a test homeserver's database
 * directly, as someone holding its disk would: SQLite through
 * better-sqlite3, PostgreSQL through pg.
 */
import BetterSqlite3 from "better-sqlite3";
import pg from "pg";
import type { Homeserver } from "@zimchat/testing/spawn";

/** Runs one read-only query (`"Table"` quoting works on both) and returns its rows. */
export async function queryServerDb<T>(server: Homeserver, sql: string, params: unknown[] = []): Promise<T[]> {
  if (server.databaseUrl.startsWith("file:")) {
    const db = new BetterSqlite3(server.databaseUrl.slice("file:".length), { readonly: true, fileMustExist: true });
    try {
      // PostgreSQL's numbered placeholders in order ($1, $2, ...) become SQLite's positional ones.
      return db.prepare(sql.replace(/\$\d+/g, "?")).all(...params) as T[];
    } finally {
      db.close();
    }
  }
  return (await postgres(server, sql, params)) as T[];
}

/**
 * Runs one statement that changes the database, as an attacker holding the
 * disk (or running the server) could: for tests of what clients detect.
 */
export async function writeServerDb(server: Homeserver, sql: string, params: unknown[] = []): Promise<void> {
  if (server.databaseUrl.startsWith("file:")) {
    const db = new BetterSqlite3(server.databaseUrl.slice("file:".length), { fileMustExist: true });
    try {
      db.pragma("busy_timeout = 5000");
      db.prepare(sql.replace(/\$\d+/g, "?")).run(...params);
    } finally {
      db.close();
    }
    return;
  }
  await postgres(server, sql, params);
}

async function postgres(server: Homeserver, sql: string, params: unknown[]): Promise<unknown[]> {
  const url = new URL(server.databaseUrl);
  const schema = url.searchParams.get("schema")!;
  url.searchParams.delete("schema");
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await client.query(`SET search_path TO "${schema}"`);
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end();
  }
}
