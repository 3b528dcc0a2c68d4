import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";
import type { SqlDriverAdapterFactory } from "@prisma/driver-adapter-utils";
import { PrismaClient as SqliteClient } from "../generated/prisma-sqlite/client.js";
import { PrismaClient as PostgresClient } from "../generated/prisma-postgresql/client.js";
import type { SqliteSynchronous } from "../config.js";
import { parseDatabaseUrl, type DatabaseTarget } from "./database-url.js";
import { makeSqliteFilesPrivate } from "./file-modes.js";
import { migrate, readMigrations } from "./migrate.js";
import type { GroupCommitStats } from "./group-commit.js";
import { SharedAdapterFactory, SqlRunner } from "./sql-runner.js";
import { SqliteWorkerAdapterFactory } from "./sqlite-worker-adapter.js";
import { startWalCheckpoints, type WalCheckpoints } from "./wal-checkpoints.js";

/**
 * How long a transaction may wait for the database before it gives up
 * (Prisma's `maxWait`; its default is 2 s). On SQLite one writer serves
 * every transaction in turn, so a burst (hundreds of registrations at once
 * on a loaded machine) can queue for longer than Prisma's default.
 */
export const transactionMaxWaitMs = 10_000;

/**
 * The Prisma client the stores use. Both providers are generated from the one
 * data model, so their model APIs are the same; the stores are typed against
 * the SQLite client and handed the PostgreSQL one on PostgreSQL.
 */
export type Db = SqliteClient;

/** Binary columns as Prisma reads and writes them. */
export type Bytes = Uint8Array<ArrayBuffer>;

/** An open database: the Prisma client plus what health checks and shutdown need. */
export interface Database {
  readonly provider: DatabaseTarget["provider"];
  readonly prisma: Db;
  /** Raw SQL on the Prisma client's own driver adapter, for the delivery path's statements (stores only). */
  readonly sql: SqlRunner;
  /** SQLite with the storage worker: its commits so far (each served one or more transactions); null otherwise. */
  writerStats(): GroupCommitStats | null;
  /** Whether the database answers and every committed migration is applied. */
  check(): Promise<{ database: boolean; migrations: boolean }>;
  close(): Promise<void>;
}

/** Options for {@link openDatabase}. */
export interface OpenDatabaseOptions {
  databaseUrl: string;
  /** @default "FULL" */
  sqliteSynchronous?: SqliteSynchronous;
  /** Apply pending migrations first. @default true */
  migrate?: boolean;
  /**
   * SQLite: checkpoint and truncate the WAL this often, so deleted rows leave
   * the WAL and the main file within seconds (0: SQLite's own auto-checkpoint
   * only). @default 2000
   */
  sqliteCheckpointMs?: number;
  /** Where a failed periodic checkpoint is reported. */
  onCheckpointError?: (error: unknown) => void;
  /**
   * SQLite: run the statements in the storage worker thread, off the event
   * loop (see sqlite-worker.ts); off runs them on the event loop.
   * @default true (false for ":memory:", which one thread cannot share)
   */
  sqliteWorker?: boolean;
}

/**
 * Opens the database named by `databaseUrl`, applying pending migrations
 * first. SQLite runs in WAL mode with the configured `synchronous` level.
 */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  const target = parseDatabaseUrl(options.databaseUrl);
  // Before the first open: the database, its WAL and shared memory are 0600 (SQLite copies the file's mode).
  if (target.provider === "sqlite" && target.path !== ":memory:") makeSqliteFilesPrivate(target.path);
  if (options.migrate !== false) await migrate(target);
  const expected = readMigrations(target.provider).map((m) => m.name);

  let prisma: Db;
  let shared: SharedAdapterFactory<SqlDriverAdapterFactory>;
  let checkpoints: WalCheckpoints | null = null;
  let workerAdapter: SqliteWorkerAdapterFactory | null = null;
  if (target.provider === "sqlite") {
    const worker = (options.sqliteWorker ?? true) && target.path !== ":memory:";
    if (worker) workerAdapter = new SqliteWorkerAdapterFactory({ path: target.path, timeoutMs: 5000 });
    shared = new SharedAdapterFactory(workerAdapter ?? new PrismaBetterSqlite3({ url: target.path, timeout: 5000 }));
    prisma = new SqliteClient({ adapter: shared, transactionOptions: { maxWait: transactionMaxWaitMs } });
    // These pragmas apply to the connection that writes (the worker's reader only reads).
    await prisma.$queryRawUnsafe("PRAGMA journal_mode = WAL");
    await prisma.$executeRawUnsafe(`PRAGMA synchronous = ${options.sqliteSynchronous ?? "FULL"}`);
    await prisma.$executeRawUnsafe("PRAGMA foreign_keys = ON");
    // Deleted rows (acknowledged envelopes, with the sender of non-sealed ones) are overwritten, not left in free
    // pages.
    await prisma.$queryRawUnsafe("PRAGMA secure_delete = ON");
    // …and leave the WAL too: its older frames hold rows as inserted until it is truncated.
    const checkpointMs = options.sqliteCheckpointMs ?? 2000;
    if (checkpointMs > 0)
      checkpoints = startWalCheckpoints(prisma, checkpointMs, options.onCheckpointError ?? (() => {}), worker);
  } else {
    // search_path makes raw SQL (atomic key claims, health checks) see the same schema.
    const adapter = new PrismaPg(
      { connectionString: target.connectionString, max: 10, options: `-c search_path="${target.schema}"` },
      { schema: target.schema },
    );
    shared = new SharedAdapterFactory(adapter);
    prisma = new PostgresClient({
      adapter: shared,
      transactionOptions: { maxWait: transactionMaxWaitMs },
    }) as unknown as Db;
  }

  const sql = SqlRunner.on(await shared.connect());

  return {
    provider: target.provider,
    prisma,
    sql,
    writerStats: () => workerAdapter?.stats() ?? null,
    async check() {
      try {
        const rows = await prisma.$queryRawUnsafe<{ migration_name: string }[]>(
          `SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
        );
        const applied = new Set(rows.map((r) => r.migration_name));
        return { database: true, migrations: expected.every((m) => applied.has(m)) };
      } catch {
        return { database: false, migrations: false };
      }
    },
    async close() {
      checkpoints?.stop();
      await prisma.$disconnect();
    },
  };
}
