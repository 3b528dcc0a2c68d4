import { createHash, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import BetterSqlite3 from "better-sqlite3";
import pg from "pg";
import type { DatabaseTarget } from "./database-url.js";

/** prisma/migrations at the repository root. */
export const defaultMigrationsDir = fileURLToPath(new URL("../../../../prisma/migrations", import.meta.url));

/** One committed migration. */
export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

/** The committed migrations for a provider, oldest first. */
export function readMigrations(provider: DatabaseTarget["provider"], dir = defaultMigrationsDir): Migration[] {
  const base = `${dir}/${provider}`;
  if (!existsSync(base)) throw new Error(`no migrations at ${base}`);
  return readdirSync(base)
    .filter((d) => /^\d+_/.test(d))
    .sort()
    .map((name) => {
      const sql = readFileSync(`${base}/${name}/migration.sql`, "utf8");
      return { name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    });
}

/** Thrown when the database's migration history disagrees with the committed migrations. */
export class MigrationError extends Error {
  override name = "MigrationError";
}

const historyTable = {
  sqlite: `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id" TEXT PRIMARY KEY NOT NULL, "checksum" TEXT NOT NULL, "finished_at" DATETIME,
    "migration_name" TEXT NOT NULL, "logs" TEXT, "rolled_back_at" DATETIME,
    "started_at" DATETIME NOT NULL DEFAULT current_timestamp, "applied_steps_count" INTEGER UNSIGNED NOT NULL DEFAULT 0)`,
  postgresql: `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) NOT NULL, "finished_at" TIMESTAMPTZ,
    "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, "rolled_back_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), "applied_steps_count" INTEGER NOT NULL DEFAULT 0)`,
};

interface AppliedRow {
  migration_name: string;
  checksum: string;
}

function plan(migrations: Migration[], applied: AppliedRow[]): Migration[] {
  const known = new Map(migrations.map((m) => [m.name, m]));
  for (const row of applied) {
    const m = known.get(row.migration_name);
    if (!m)
      throw new MigrationError(
        `the database has migration ${row.migration_name}, which this version does not know: is it older than the database?`,
      );
    if (m.checksum !== row.checksum)
      throw new MigrationError(`migration ${m.name} was edited after it was applied (checksum differs)`);
  }
  const done = new Set(applied.map((r) => r.migration_name));
  return migrations.filter((m) => !done.has(m.name));
}

/**
 * Applies the committed migrations that the database lacks, each in its own
 * transaction, and records them in Prisma's `_prisma_migrations` table (so
 * Prisma's own tooling reads the same history). Runs with the bare driver:
 * Prisma's schema engine is not needed at run time. On PostgreSQL an advisory
 * lock makes concurrent start-ups of several nodes safe.
 * @returns the names of the migrations applied now
 */
export async function migrate(target: DatabaseTarget, migrationsDir = defaultMigrationsDir): Promise<string[]> {
  const migrations = readMigrations(target.provider, migrationsDir);
  if (target.provider === "sqlite") {
    if (target.path !== ":memory:") mkdirSync(dirname(target.path), { recursive: true });
    const db = new BetterSqlite3(target.path);
    try {
      db.pragma("journal_mode = WAL");
      db.exec(historyTable.sqlite);
      const pending = plan(
        migrations,
        db
          .prepare(
            `SELECT migration_name, checksum FROM "_prisma_migrations" WHERE rolled_back_at IS NULL AND finished_at IS NOT NULL`,
          )
          .all() as AppliedRow[],
      );
      for (const m of pending) {
        db.transaction(() => {
          db.exec(m.sql);
          db.prepare(
            `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count) VALUES (?, ?, current_timestamp, ?, 1)`,
          ).run(randomUUID(), m.checksum, m.name);
        })();
      }
      return pending.map((m) => m.name);
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: target.connectionString });
  await client.connect();
  try {
    await client.query(`SELECT pg_advisory_lock(hashtext('zimchat-migrate:' || $1))`, [target.schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${target.schema}"`);
    await client.query(`SET search_path TO "${target.schema}"`);
    await client.query(historyTable.postgresql);
    const { rows } = await client.query<AppliedRow>(
      `SELECT migration_name, checksum FROM "_prisma_migrations" WHERE rolled_back_at IS NULL AND finished_at IS NOT NULL`,
    );
    const pending = plan(migrations, rows);
    for (const m of pending) {
      await client.query("BEGIN");
      try {
        await client.query(m.sql);
        await client.query(
          `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count) VALUES ($1, $2, now(), $3, 1)`,
          [randomUUID(), m.checksum, m.name],
        );
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK");
        throw new MigrationError(`migration ${m.name} failed`, { cause: error });
      }
    }
    return pending.map((m) => m.name);
  } finally {
    await client.end();
  }
}
