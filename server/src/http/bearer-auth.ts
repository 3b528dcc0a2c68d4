import { createHash, timingSafeEqual } from "node:crypto";
import type { Request, RequestHandler } from "express";
import { HttpError } from "../errors.js";

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();

/**
 * Express middleware that requires `Authorization: Bearer <token>`. Both
 * sides are hashed before a constant-time comparison, so neither the
 * token's bytes nor its length leak through timing. A refusal is 401
 * `unauthorized`; the given token never reaches the log or the answer.
 * @param realm names what the token opens (`zimchat-admin`, `zimchat-metrics`)
 * @param onRefused told of each refusal (for a log line without the token or the address)
 */
export function bearerAuth(token: string, realm: string, onRefused: (req: Request) => void = () => {}): RequestHandler {
  const expected = sha256(token);
  return (req, _res, next) => {
    const match = /^Bearer (\S{1,1024})$/i.exec(req.headers.authorization?.trim() ?? "");
    if (!match || !timingSafeEqual(sha256(match[1]!), expected)) {
      onRefused(req);
      next(
        new HttpError(
          "unauthorized",
          `A valid ${realm} token is required`,
          {},
          { "WWW-Authenticate": `Bearer realm="${realm}"` },
        ),
      );
      return;
    }
    next();
  };
}
