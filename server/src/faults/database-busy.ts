import { HttpError } from "../errors.js";

/** Seconds a client is told to wait after a database-busy refusal. */
export const databaseBusyRetryAfterSeconds = 1;

/**
 * The answer to a request whose transaction could not start in time, or ran
 * past its time limit (Prisma `P2028`): the transaction was rolled back, so
 * nothing was stored, and the client may send the same request again.
 * 503 `unavailable` with `Retry-After`.
 */
export function databaseBusyError(error: unknown): HttpError | null {
  if ((error as { code?: unknown } | null)?.code !== "P2028") return null;
  return new HttpError(
    "unavailable",
    "The database is busy; nothing was stored. Try again shortly",
    { retryAfterSeconds: databaseBusyRetryAfterSeconds },
    { "Retry-After": String(databaseBusyRetryAfterSeconds) },
  );
}
