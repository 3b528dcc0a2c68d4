import express, { type Request, type Response } from "express";
import { limits } from "@zimchat/protocol";
import { HttpError } from "../errors.js";

/** Where refusals are counted (`Metrics`, or nothing). */
export interface RefusalCounter {
  refused(reason: string): void;
}

/**
 * Reads and parses one request's JSON body into `req.body` (a no-op for a
 * request without a body). `checkRaw` sees the raw bytes first (a signed
 * request's digest) and may throw.
 */
export type JsonBodyReader = (req: Request, res: Response, checkRaw?: (bytes: Uint8Array) => void) => Promise<void>;

/** body-parser's `type` of a {@link checkDepth} refusal, mapped to `too_deeply_nested` by the error middleware. */
export const tooDeepType = "entity.too.deep";

/**
 * A JSON body reader for one route, called by the route's handler once the
 * caller is authenticated, so no body is buffered or parsed for a request
 * that is refused anyway (unknown path, no credentials). The body is read
 * up to `limitBytes` (a larger declared Content-Length is refused before a
 * byte is read), scanned for its nesting depth before `JSON.parse` sees it,
 * then parsed. Refusals are counted as `body_too_large` and `too_deeply_nested`.
 */
export function jsonBodyReader(limitBytes: number, refusals?: RefusalCounter): JsonBodyReader {
  const parse = express.json({ limit: limitBytes, strict: true, type: () => true, verify: checkDepth });
  return (req, res) =>
    new Promise<void>((resolve, reject) => {
      parse(req, res, (error?: unknown) => {
        if (error === undefined) return resolve();
        const type = (error as { type?: string } | null)?.type;
        if (type === "entity.too.large") refusals?.refused("body_too_large");
        else if (type === tooDeepType) refusals?.refused("too_deeply_nested");
        reject(error);
      });
    });
}

/**
 * A JSON body reader for a signed federation route: the same limits as
 * {@link jsonBodyReader}, with `checkRaw` (the `Content-Digest` check) run
 * on the raw bytes before they are parsed. A body the checker refuses is
 * never parsed.
 */
export function signedJsonBodyReader(limitBytes: number, refusals?: RefusalCounter): JsonBodyReader {
  const parse = express.json({
    limit: limitBytes,
    strict: true,
    type: () => true,
    verify: (req, res, bytes) => {
      (req as unknown as { checkRaw?: (bytes: Uint8Array) => void }).checkRaw?.(bytes);
      checkDepth(req, res, bytes);
    },
  });
  return (req, res, checkRaw) =>
    new Promise<void>((resolve, reject) => {
      Object.assign(req, { checkRaw: checkRaw ?? ((): void => undefined) });
      parse(req, res, (error?: unknown) => {
        if (error === undefined) return resolve();
        const type = (error as { type?: string } | null)?.type;
        if (type === "entity.too.large") refusals?.refused("body_too_large");
        else if (type === tooDeepType) refusals?.refused("too_deeply_nested");
        reject(error);
      });
    });
}

/**
 * Refuses a body whose arrays and objects nest deeper than
 * `limits.maxJsonDepth`, from its raw bytes: one linear pass that stops at
 * the first level too deep, where `JSON.parse` of a megabyte of `[[[[…` would
 * spend hundreds of milliseconds building nested arrays. Brackets inside
 * strings do not count. Runs on the decoded bytes (body-parser's `verify`).
 */
export function checkDepth(_req: unknown, _res: unknown, bytes: Buffer): void {
  const max = limits.maxJsonDepth;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max)
        throw Object.assign(new Error("too deeply nested"), { type: tooDeepType, status: 400, expose: true });
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
}

/** The error answered for a {@link checkDepth} refusal. */
export function tooDeeplyNested(): HttpError {
  return new HttpError(
    "too_deeply_nested",
    `The request body nests arrays and objects more than ${limits.maxJsonDepth} levels deep`,
  );
}
