import { Worker } from "node:worker_threads";
import {
  DriverAdapterError,
  type IsolationLevel,
  type SqlDriverAdapter,
  type SqlDriverAdapterFactory,
  type SqlQuery,
  type SqlResultSet,
  type Transaction,
} from "@prisma/driver-adapter-utils";
import type { BatchingAdapter } from "./sql-runner.js";
import { GroupCommit, type GroupCommitStats, type Member } from "./group-commit.js";
import {
  toWire,
  type SerializedError,
  type SerializedStepsOutcome,
  type SqliteWorkerData,
  type StepsOutcome,
  type WorkerConnection,
  type WorkerReply,
  type WorkerRequest,
} from "./sqlite-worker-protocol.js";

/** Options for {@link SqliteWorkerAdapterFactory}. */
export interface SqliteWorkerOptions {
  /** The database file. */
  path: string;
  /** SQLite's busy timeout. @default 5000 */
  timeoutMs?: number;
}

type Request = WorkerRequest extends infer R ? (R extends unknown ? Omit<R, "id"> : never) : never;

/**
 * A Prisma driver adapter whose statements run in the storage worker
 * (sqlite-worker.ts), which holds Prisma's better-sqlite3 adapter: the
 * Prisma client, its query compiler and the stores stay on the main thread;
 * SQLite's work and its fsyncs move off it.
 *
 * Semantics are those of the better-sqlite3 adapter, stricter in two ways:
 * a write outside a transaction waits its turn instead of joining whatever
 * transaction is open, and a SELECT outside a transaction runs on the
 * worker's read-only connection, so it sees committed rows only. Writes
 * share commits through {@link GroupCommit}: every transaction, and every
 * write outside one, resolves only once its group's COMMIT is durable.
 */
export class SqliteWorkerAdapterFactory implements SqlDriverAdapterFactory {
  readonly provider = "sqlite";
  readonly adapterName = "@prisma/adapter-better-sqlite3";
  private adapter: SqliteWorkerAdapter | null = null;

  constructor(private readonly options: SqliteWorkerOptions) {}

  async connect(): Promise<SqlDriverAdapter> {
    const channel = await WorkerChannel.start({ path: this.options.path, timeoutMs: this.options.timeoutMs ?? 5000 });
    return (this.adapter = new SqliteWorkerAdapter(channel));
  }

  /** The writer's commits so far (zero before the first query connects the adapter). */
  stats(): GroupCommitStats {
    return this.adapter?.writer.stats() ?? { commits: 0, members: 0 };
  }
}

/** The storage worker and the requests waiting for its answers. */
class WorkerChannel {
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private failure: Error | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on("message", (reply: WorkerReply) => this.settle(reply));
    worker.on("error", (error) => this.fail(error));
    worker.on("exit", (code) => this.fail(new Error(`The SQLite storage worker exited (code ${code})`)));
    // Referenced only while a statement is in flight: an idle worker never keeps the process alive.
    worker.unref();
  }

  static start(data: SqliteWorkerData): Promise<WorkerChannel> {
    const worker = new Worker(new URL("./sqlite-worker.js", import.meta.url), {
      workerData: data,
      // Its objects live for one statement: a small young generation keeps its resident memory small.
      resourceLimits: { maxYoungGenerationSizeMb: 4 },
    });
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      worker.once("error", onError);
      worker.once("message", (reply: WorkerReply) => {
        worker.off("error", onError);
        if (reply.error) void worker.terminate().finally(() => reject(toError(reply.error!)));
        else resolve(new WorkerChannel(worker));
      });
    });
  }

  call(request: Request): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...request, id });
    });
  }

  async close(): Promise<void> {
    if (!this.failure) await this.call({ kind: "close", connection: "writer" });
    this.failure ??= new Error("The SQLite storage worker was closed");
    await this.worker.terminate();
  }

  private settle(reply: WorkerReply): void {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if (reply.error) waiting.reject(toError(reply.error));
    else waiting.resolve(reply.value);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}

/** The driver's mapped error becomes a DriverAdapterError again, which Prisma turns into its own error codes. */
function toError(error: SerializedError): Error {
  if (error.cause) return new DriverAdapterError(error.cause as ConstructorParameters<typeof DriverAdapterError>[0]);
  return Object.assign(new Error(error.message), { name: error.name });
}

const readOnly = /^\s*SELECT\b/i;

class WorkerQueryable {
  readonly provider = "sqlite";
  readonly adapterName = "@prisma/adapter-better-sqlite3";

  constructor(protected readonly channel: WorkerChannel) {}

  protected run(connection: WorkerConnection, kind: "query", query: SqlQuery): Promise<SqlResultSet>;
  protected run(connection: WorkerConnection, kind: "execute", query: SqlQuery): Promise<number>;
  protected run(connection: WorkerConnection, kind: "query" | "execute", query: SqlQuery): Promise<unknown> {
    return this.channel.call({ connection, kind, query: toWire(query) });
  }
}

/** Statements that must run outside any transaction: PRAGMAs (journal mode, checkpoints). */
const outsideTransactions = /^\s*PRAGMA\b/i;

class SqliteWorkerAdapter extends WorkerQueryable implements SqlDriverAdapter, BatchingAdapter {
  readonly writer: GroupCommit;

  constructor(channel: WorkerChannel) {
    super(channel);
    this.writer = new GroupCommit(async (steps): Promise<StepsOutcome> => {
      const wire = steps.map((step) => (typeof step === "string" ? step : toWire(step)));
      const request = { connection: "writer", kind: "steps", steps: wire } as const;
      const outcome = (await this.channel.call(request)) as SerializedStepsOutcome;
      const { results, failure } = outcome;
      return failure ? { results, failure: { at: failure.at, error: toError(failure.error) } } : { results };
    });
  }

  /** Statements known in advance, in one transaction: one round trip, shared with the batches waiting with it. */
  async executeBatch(queries: SqlQuery[]): Promise<SqlResultSet[]> {
    return this.writer.unit(queries);
  }

  queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    if (readOnly.test(query.sql)) return this.run("reader", "query", query);
    return this.write(query, () => this.run("writer", "query", query));
  }

  executeRaw(query: SqlQuery): Promise<number> {
    return this.write(query, () => this.run("writer", "execute", query));
  }

  executeScript(script: string): Promise<void> {
    return this.writer.alone(async () => {
      await this.channel.call({ connection: "writer", kind: "script", script });
    });
  }

  async startTransaction(isolationLevel?: IsolationLevel): Promise<Transaction> {
    if (isolationLevel && isolationLevel !== "SERIALIZABLE") {
      throw new DriverAdapterError({ kind: "InvalidIsolationLevel", level: isolationLevel });
    }
    return new WorkerTransaction(this.channel, this.writer, await this.writer.begin());
  }

  dispose(): Promise<void> {
    return this.channel.close();
  }

  /** A write outside a transaction is a one-statement member of the group (a PRAGMA runs alone). */
  private async write<T>(query: SqlQuery, statement: () => Promise<T>): Promise<T> {
    if (outsideTransactions.test(query.sql)) return this.writer.alone(statement);
    const member = await this.writer.begin();
    let result: T;
    try {
      result = await statement();
    } catch (error) {
      this.writer.statementFailed(error);
      await this.writer.end(member, false);
      throw error;
    }
    await this.writer.end(member, true);
    return result;
  }
}

/**
 * A transaction: a member of the writer's group (group-commit.ts). Prisma
 * sends COMMIT or ROLLBACK as a statement, then calls commit() or
 * rollback(); the statement ends the member (a COMMIT resolves once the
 * group's COMMIT is durable), and the calls after it do nothing more.
 */
class WorkerTransaction extends WorkerQueryable implements Transaction {
  readonly options = { usePhantomQuery: false };
  private ended = false;

  constructor(
    channel: WorkerChannel,
    private readonly writer: GroupCommit,
    private readonly member: Member,
  ) {
    super(channel);
  }

  async queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    return this.statement(() => this.run("writer", "query", query));
  }

  async executeRaw(query: SqlQuery): Promise<number> {
    const sql = query.sql.trim().toUpperCase();
    if (sql === "COMMIT" || sql === "ROLLBACK") {
      await this.end(sql === "COMMIT");
      return 0;
    }
    return this.statement(() => this.run("writer", "execute", query));
  }

  commit(): Promise<void> {
    return this.end(true);
  }

  rollback(): Promise<void> {
    return this.end(false);
  }

  async createSavepoint(name: string): Promise<void> {
    await this.executeRaw({ sql: `SAVEPOINT ${name}`, args: [], argTypes: [] });
  }

  async rollbackToSavepoint(name: string): Promise<void> {
    await this.executeRaw({ sql: `ROLLBACK TO ${name}`, args: [], argTypes: [] });
  }

  async releaseSavepoint(name: string): Promise<void> {
    await this.executeRaw({ sql: `RELEASE SAVEPOINT ${name}`, args: [], argTypes: [] });
  }

  private async statement<T>(run: () => Promise<T>): Promise<T> {
    if (this.ended) throw new Error("The transaction has ended");
    try {
      return await run();
    } catch (error) {
      this.writer.statementFailed(error);
      throw error;
    }
  }

  private async end(commit: boolean): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.writer.end(this.member, commit);
  }
}
