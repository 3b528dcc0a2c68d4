import type { Request, Response } from "express";

/** How long a refused request's remaining body is read and discarded before the connection is closed. */
export const lingerMs = 10_000;

/** Whether the request has a body that nobody has started to read (a refusal before the body). */
export function hasUnreadBody(req: Request): boolean {
  if (req.complete || req.readableFlowing !== null) return false;
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/**
 * A refusal before the whole body was read (unknown path, unauthenticated,
 * over a cap or quota). A client still sending would see a reset connection,
 * not the answer, if the server closed at once; so once the answer is out the
 * rest of the body is read and discarded (never stored, buffered or parsed),
 * as a lingering close does, for at most {@link lingerMs}, after which the
 * connection is closed.
 */
export function discardRest(req: Request, res: Response): void {
  // Node closes a `Connection: close` request's socket as soon as the answer is out, which resets a
  // client still sending before it reads the answer: keep it open while the rest is discarded.
  // (An answer that sets its own Connection header afterwards, e.g. a stalled upload's close, wins.)
  if (!res.headersSent) res.setHeader("Connection", "keep-alive");
  res.once("finish", () => {
    if (req.complete) return;
    const deadline = setTimeout(() => req.socket.destroy(), lingerMs);
    deadline.unref();
    const stop = (): void => clearTimeout(deadline);
    req.once("end", stop).once("close", stop);
    req.resume();
  });
}
