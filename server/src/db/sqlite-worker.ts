/**
 * The storage worker: a worker thread that owns the homeserver's SQLite
 * connections and runs every statement the main thread's Prisma client sends
 * it (see sqlite-worker-adapter.ts). SQLite through better-sqlite3 is
 * synchronous: run on the main thread, each commit's fsync
 * (`synchronous=FULL`) stalled every socket of the node for its duration.
 * Here it stalls only this thread.
 *
 * Two connections, both through Prisma's own better-sqlite3 driver adapter:
 * the writer runs transactions and every statement that may write; the
 * reader (read-only) runs the SELECTs issued outside a transaction, so they
 * see committed rows only, never a batch the writer has not committed yet.
 */
import { parentPort, workerData } from "node:worker_threads";
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import type { SqlDriverAdapter, SqlResultSet } from "@prisma/driver-adapter-utils";
import {
  fromWire,
  type SerializedError,
  type SerializedStepsOutcome,
  type SqliteWorkerData,
  type WireStep,
  type WorkerReply,
  type WorkerRequest,
} from "./sqlite-worker-protocol.js";

const port = parentPort;
if (!port) throw new Error("sqlite-worker.js runs as a worker thread");
const { path, timeoutMs } = workerData as SqliteWorkerData;

// Opened in order, writer first: it sets WAL mode, which the read-only connection cannot.
const opened = (async () => {
  const writer = await new PrismaBetterSqlite3({ url: path, timeout: timeoutMs }).connect();
  const reader = await new PrismaBetterSqlite3({ url: path, timeout: timeoutMs, readonly: true }).connect();
  return { writer, reader };
})();

async function run(request: WorkerRequest): Promise<unknown> {
  const { writer, reader } = await opened;
  const connection: SqlDriverAdapter = request.connection === "reader" ? reader : writer;
  switch (request.kind) {
    case "query":
      return connection.queryRaw(fromWire(request.query));
    case "execute":
      return connection.executeRaw(fromWire(request.query));
    case "script":
      return connection.executeScript(request.script);
    case "steps":
      return runSteps(connection, request.steps);
    case "close":
      await reader.dispose();
      await writer.dispose();
      return undefined;
  }
}

/** Runs steps in order until one fails: a whole group commit's statements in one round trip. */
async function runSteps(connection: SqlDriverAdapter, steps: WireStep[]): Promise<SerializedStepsOutcome> {
  const results: (SqlResultSet | null)[] = [];
  for (const step of steps) {
    try {
      if (typeof step === "string") {
        await connection.executeScript(step);
        results.push(null);
      } else results.push(await connection.queryRaw(fromWire(step)));
    } catch (error) {
      return { results, failure: { at: results.length, error: serializeError(error) } };
    }
  }
  return { results };
}

port.on("message", (request: WorkerRequest) => {
  run(request).then(
    (value) => port.postMessage({ id: request.id, value } satisfies WorkerReply),
    (error: unknown) => port.postMessage({ id: request.id, error: serializeError(error) } satisfies WorkerReply),
  );
});
opened.then(
  () => port.postMessage({ id: 0, value: "ready" } satisfies WorkerReply),
  (error: unknown) => port.postMessage({ id: 0, error: serializeError(error) } satisfies WorkerReply),
);

/** Errors cross the thread boundary as plain data; the driver's mapped error (`cause`) is what Prisma reads. */
function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return {
      name: error.name,
      message: error.message,
      ...(error.name === "DriverAdapterError" && typeof cause === "object" && cause !== null && { cause }),
    };
  }
  return { name: "Error", message: String(error) };
}
