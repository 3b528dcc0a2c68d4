/**
 * Retrying sends safely. Every send carries a fresh random idempotency key
 * (like Matrix's `txnId`); a send that fails without an answer (the
 * connection dropped, the server restarted, a proxy answered 502/503/504)
 * is retried with the SAME key, so a send the server had already committed
 * is answered with its first answer instead of being stored twice.
 */
import { randomBytes } from "node:crypto";
import { ApiError } from "./errors.js";

/** How a send is retried. */
export interface SendRetryPolicy {
  /** Give up (throw the last error) once this much time has passed since the first attempt. 0: never retry. */
  maxMs: number;
  /** The first wait; each later wait doubles, up to `maxDelayMs` (a server's `Retry-After` wins when longer). */
  initialDelayMs: number;
  maxDelayMs: number;
  /** An attempt with no answer after this long is abandoned and retried (the key makes that safe). */
  attemptTimeoutMs: number;
}

/** The defaults: retry for a minute, 250 ms to 2 s apart; give one attempt 30 s. */
export const defaultSendRetryPolicy: SendRetryPolicy = {
  maxMs: 60_000,
  initialDelayMs: 250,
  maxDelayMs: 2_000,
  attemptTimeoutMs: 30_000,
};

/** A fresh idempotency key: 16 random bytes, base64url (22 characters). */
export function newIdempotencyKey(): string {
  return randomBytes(16).toString("base64url");
}

/**
 * Whether a failed send may have failed before the server answered, so
 * retrying it with the same key is right: a network error (fetch's
 * TypeError, a socket that disconnected or timed out) or a 5xx (the server
 * or its proxy failed; a 507 full disk recovers). A 4xx is the server's
 * answer and is not retried here.
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof ApiError) return error.status >= 500;
  if (error instanceof TypeError) return true; // fetch: connection refused, reset, DNS
  const message = error instanceof Error ? error.message : "";
  // socket.io-client: an ack lost with the connection, or no ack within the timeout.
  return message === "socket has been disconnected" || message === "operation has timed out";
}

/**
 * Runs `attempt` until it succeeds, fails with an error that is not
 * retryable, or the policy's time is up. The caller's closure must reuse
 * one idempotency key for every attempt.
 */
export async function withSendRetry<T>(
  attempt: () => Promise<T>,
  policy: SendRetryPolicy = defaultSendRetryPolicy,
): Promise<T> {
  const started = Date.now();
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      const backoff = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** n);
      const delay = Math.max(backoff, error instanceof ApiError ? (error.retryAfterMs() ?? 0) : 0);
      if (!isRetryable(error) || Date.now() + delay - started > policy.maxMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
