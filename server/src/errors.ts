import { errorStatus, type ErrorBody, type ErrorCode } from "@zimchat/protocol";

/** Extra machine-readable fields some error codes carry. */
export type ErrorDetails = Omit<ErrorBody, "code" | "message">;

/**
 * A refusal with an HTTP status and a machine-readable code. Services throw
 * it; the HTTP error middleware and the socket gateway turn it into the
 * same error body.
 */
export class HttpError extends Error {
  override name = "HttpError";
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetails = {},
    readonly headers: Record<string, string> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.status = errorStatus[code];
  }

  /** The JSON body of the answer. */
  toBody(): ErrorBody {
    return { code: this.code, message: this.message, ...this.details };
  }
}

/** The answer when a rate limit refuses a request. */
export function rateLimited(retryAfterMs: number): HttpError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new HttpError(
    "rate_limited",
    "Too many requests",
    { retryAfterSeconds: seconds },
    { "Retry-After": String(seconds) },
  );
}
