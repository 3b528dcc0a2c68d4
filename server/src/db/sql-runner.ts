import type {
  ArgType,
  SqlDriverAdapter,
  SqlDriverAdapterFactory,
  SqlQuery,
  SqlQueryable,
  SqlResultSet,
  Transaction,
} from "@prisma/driver-adapter-utils";
import type { Prisma } from "../generated/prisma-sqlite/client.js";

/**
 * Raw SQL handed straight to Prisma's driver adapter, the same adapter
 * instance the Prisma client uses: for the few statements of the delivery
 * path (insert envelopes, read recipients, delete on ack), where the client
 * runtime's per-call work (query plan, parameter serialization, bytes to
 * base64 and back) cost more than the statement. Statements are written
 * with `Prisma.sql` as elsewhere; rows come back as plain objects, with the
 * driver's values (numbers may be bigints or strings on PostgreSQL: the
 * stores convert). Used by stores only.
 */
export class SqlRunner {
  private constructor(
    private readonly target: SqlQueryable,
    private readonly adapter: SqlDriverAdapter,
  ) {}

  /** A runner on a connected adapter. */
  static on(adapter: SqlDriverAdapter): SqlRunner {
    return new SqlRunner(adapter, adapter);
  }

  /** The database these statements run on. */
  get provider(): SqlQueryable["provider"] {
    return this.target.provider;
  }

  /** The rows a statement returns, as objects keyed by column name. */
  async query<T>(statement: Prisma.Sql): Promise<T[]> {
    return rowsOf<T>(await this.target.queryRaw(this.render(statement)));
  }

  /**
   * Runs statements in order in one transaction (all or none) and returns
   * each one's rows. On the SQLite storage worker the whole transaction is
   * one round trip, shared with the batches waiting with it
   * (group-commit.ts); elsewhere the statements run one by one.
   */
  async batch(statements: Prisma.Sql[]): Promise<Record<string, unknown>[][]> {
    const queries = statements.map((s) => this.render(s));
    if (this.target === this.adapter && isBatching(this.adapter)) {
      return (await this.adapter.executeBatch(queries)).map((r) => rowsOf(r));
    }
    const run = async (target: SqlQueryable) => {
      const out: Record<string, unknown>[][] = [];
      for (const query of queries) out.push(rowsOf(await target.queryRaw(query)));
      return out;
    };
    return this.target === this.adapter ? this.transaction((tx) => run(tx.target)) : run(this.target);
  }

  /** Runs a statement; the number of rows it changed. */
  execute(statement: Prisma.Sql): Promise<number> {
    return this.target.executeRaw(this.render(statement));
  }

  /**
   * Runs `work` in one transaction, driven as the Prisma client drives it
   * (COMMIT or ROLLBACK as a statement, then `commit()` or `rollback()`):
   * committed when `work` resolves, rolled back when it throws.
   */
  async transaction<T>(work: (tx: SqlRunner) => Promise<T>): Promise<T> {
    const tx = await this.adapter.startTransaction();
    let result: T;
    try {
      result = await work(new SqlRunner(tx, this.adapter));
    } catch (error) {
      await end(tx, false).catch(() => {});
      throw error;
    }
    await end(tx, true);
    return result;
  }

  private render(statement: Prisma.Sql): SqlQuery {
    const args = statement.values;
    return {
      sql: this.target.provider === "postgres" ? statement.text : statement.sql,
      args,
      argTypes: args.map(argTypeOf),
    };
  }
}

/** An adapter that runs a transaction of statements known in advance in one call (the SQLite storage worker's). */
export interface BatchingAdapter {
  executeBatch(queries: SqlQuery[]): Promise<SqlResultSet[]>;
}

function isBatching(adapter: SqlDriverAdapter): adapter is SqlDriverAdapter & BatchingAdapter {
  return typeof (adapter as Partial<BatchingAdapter>).executeBatch === "function";
}

function rowsOf<T = Record<string, unknown>>(result: SqlResultSet): T[] {
  const names = result.columnNames;
  return result.rows.map((row) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i++) out[names[i]!] = row[i];
    return out as T;
  });
}

async function end(tx: Transaction, commit: boolean): Promise<void> {
  if (!tx.options.usePhantomQuery) {
    try {
      await tx.executeRaw({ sql: commit ? "COMMIT" : "ROLLBACK", args: [], argTypes: [] });
    } catch (error) {
      await tx.rollback();
      throw error;
    }
  }
  await (commit ? tx.commit() : tx.rollback());
}

function argTypeOf(value: unknown): ArgType {
  const scalar = (scalarType: ArgType["scalarType"]): ArgType => ({ scalarType, arity: "scalar" });
  switch (typeof value) {
    case "string":
      return scalar("string");
    case "number":
      if (!Number.isInteger(value)) return scalar("float");
      return scalar(Math.abs(value as number) < 2 ** 31 ? "int" : "bigint");
    case "bigint":
      return scalar("bigint");
    case "boolean":
      return scalar("boolean");
    default:
      return scalar(value instanceof Uint8Array ? "bytes" : "unknown");
  }
}

/**
 * Wraps a driver adapter factory to keep the adapter it connects, so a
 * {@link SqlRunner} can share it with the Prisma client.
 */
export class SharedAdapterFactory<F extends SqlDriverAdapterFactory> implements SqlDriverAdapterFactory {
  readonly provider: F["provider"];
  readonly adapterName: string;
  private connected: Promise<SqlDriverAdapter> | null = null;

  constructor(readonly inner: F) {
    this.provider = inner.provider;
    this.adapterName = inner.adapterName;
  }

  /** Connects once; the Prisma client and the runner get the same adapter. */
  connect(): Promise<SqlDriverAdapter> {
    this.connected ??= this.inner.connect();
    return this.connected;
  }
}
