import type { ArgType, SqlQuery, SqlResultSet } from "@prisma/driver-adapter-utils";

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
 * A statement as it crosses the thread. Its argument types are mostly the
 * same few objects: they cross once each (`types`), with one index per
 * argument (`typeIndex`), because cloning one small object per argument
 * cost more than the statement (about 5 us per envelope of a send batch).
 */
export interface WireQuery {
  sql: string;
  args: unknown[];
  types: ArgType[];
  typeIndex: Uint8Array;
}

/** Which wire step a step becomes. */
export type WireStep = string | WireQuery;

/** A statement for the thread crossing. */
export function toWire(query: SqlQuery): WireQuery {
  const types: ArgType[] = [];
  const seen = new Map<string, number>();
  const typeIndex = new Uint8Array(query.argTypes.length);
  query.argTypes.forEach((type, i) => {
    const key = `${type.scalarType}|${type.arity}|${type.dbType ?? ""}`;
    let index = seen.get(key);
    if (index === undefined) {
      index = types.push(type) - 1;
      if (index > 255) throw new Error("A statement has more than 256 distinct argument types");
      seen.set(key, index);
    }
    typeIndex[i] = index;
  });
  return { sql: query.sql, args: query.args, types, typeIndex };
}

/** The statement again, on the worker's side. */
export function fromWire(query: WireQuery): SqlQuery {
  const argTypes = new Array<ArgType>(query.typeIndex.length);
  for (let i = 0; i < argTypes.length; i++) argTypes[i] = query.types[query.typeIndex[i]!]!;
  return { sql: query.sql, args: query.args, argTypes };
}

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
  | { kind: "query" | "execute"; query: WireQuery }
  | { kind: "script"; script: string }
  | { kind: "steps"; steps: WireStep[] }
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
