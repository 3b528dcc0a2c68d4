import type { SqlQuery } from "@prisma/driver-adapter-utils";

/** What the storage worker is started with. */
export interface SqliteWorkerData {
  path: string;
  /** SQLite's busy timeout for both connections. */
  timeoutMs: number;
}

/** Which of the worker's two connections runs a statement. */
export type WorkerConnection = "writer" | "reader";

/** One statement (or the close) sent to the storage worker. */
export type WorkerRequest = { id: number; connection: WorkerConnection } & (
  { kind: "query" | "execute"; query: SqlQuery } | { kind: "script"; script: string } | { kind: "close" }
);

/** The worker's answer to request `id` (id 0: the worker has opened its connections). */
export interface WorkerReply {
  id: number;
  value?: unknown;
  error?: { name: string; message: string; cause?: object };
}
