import type { SqlQuery, SqlResultSet } from "@prisma/driver-adapter-utils";

/** What the storage worker is started with. */
export interface SqliteWorkerData {
  path: string;
  /** SQLite's busy timeout for both connections. */
  timeoutMs: number;
}

/** Which of the worker's two connections runs a statement. */
export type WorkerConnection = "writer" | "reader";

/** A step of a "steps" request: a script without arguments (BEGIN, SAVEPOINT, COMMIT...) or a statement. */
export type Step = string | SqlQuery;

/**
 * The answer to a "steps" request: each step's result (a statement's result
 * set, null for a script) up to the first failure; the steps after a failed
 * one did not run.
 */
export interface StepsOutcome {
  results: (SqlResultSet | null)[];
  failure?: { at: number; error: Error };
}

/** One statement, a list of steps run in order in one round trip, or the close, sent to the storage worker. */
export type WorkerRequest = { id: number; connection: WorkerConnection } & (
  | { kind: "query" | "execute"; query: SqlQuery }
  | { kind: "script"; script: string }
  | { kind: "steps"; steps: Step[] }
  | { kind: "close" }
);

/** The worker's answer to request `id` (id 0: the worker has opened its connections). */
export interface WorkerReply {
  id: number;
  value?: unknown;
  error?: SerializedError;
}

/** An error as it crosses the thread: the driver's mapped error (`cause`) is what Prisma reads. */
export interface SerializedError {
  name: string;
  message: string;
  cause?: object;
}

/** A "steps" answer as it crosses the thread. */
export interface SerializedStepsOutcome {
  results: (SqlResultSet | null)[];
  failure?: { at: number; error: SerializedError };
}
