import { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { accessKeyHeader, bodyLimitOf, routes, type RouteName, type RouteSpec } from "@zimchat/protocol";
import type { ZodError } from "zod";
import { HttpError } from "../errors.js";
import { databaseBusyError } from "../faults/database-busy.js";
import { storageFullError } from "../faults/storage-full.js";
import type { Logger } from "../logger.js";
import { unauthorized, type AccountService } from "../services/account-service.js";
import type { IncomingRequest } from "../federation/request-signing.js";
import { parseBasicAuth } from "./basic-auth.js";
import type { RouteGuards, RouteHandlers } from "./context.js";
import {
  jsonBodyReader,
  signedJsonBodyReader,
  tooDeeplyNested,
  tooDeepType,
  type JsonBodyReader,
  type RefusalCounter,
} from "./json-body.js";
import { discardRest, hasUnreadBody } from "./unread-body.js";

/** A zod failure as the `invalid_request` error body. */
export function invalidRequest(error: ZodError, where: "body" | "params" | "query"): HttpError {
  return new HttpError("invalid_request", `The request ${where} is invalid`, {
    issues: error.issues.slice(0, 20).map((i) => ({
      path: [where, ...i.path.map((p) => (typeof p === "symbol" ? String(p) : p))],
      message: i.message,
    })),
  });
}

/** What the router needs besides the handlers. */
export interface RouterOptions {
  /** Checks that run before a route's body is read (see {@link RouteGuards}). */
  guards?: RouteGuards;
  /** Counts body refusals (`body_too_large`, `too_deeply_nested`). */
  refusals?: RefusalCounter;
  /** Checks the signature of a federation request (`auth: "server"`); returns the origin server. */
  federation?: {
    authenticate(request: IncomingRequest): Promise<string>;
    checkBody(headers: IncomingRequest["headers"], body: Uint8Array): void;
  };
}

/**
 * Mounts every route of the protocol's table: authenticate (if the route
 * needs it), validate params, run the route's guard, and only then read the
 * JSON body (under the route's own limit, see {@link jsonBodyReader}) and
 * validate it; call the handler, answer with the route's success status.
 * Errors go to the error middleware.
 */
export function createRouter(
  handlers: RouteHandlers,
  accounts: AccountService,
  logger: Logger,
  options: RouterOptions = {},
): Router {
  const router = Router();
  for (const [name, route] of Object.entries(routes) as [RouteName, RouteSpec][]) {
    const handler = handlers[name] as (ctx: unknown) => Promise<unknown>;
    const guard = options.guards?.[name] as ((ctx: unknown) => Promise<void>) | undefined;
    // A federation body is read raw (its Content-Digest is checked against the bytes), then parsed.
    const readBody = route.body
      ? route.auth === "server"
        ? signedJsonBodyReader(bodyLimitOf(route), options.refusals)
        : jsonBodyReader(bodyLimitOf(route), options.refusals)
      : null;
    const mount: RequestHandler = (req, res, next) => {
      const started = performance.now();
      res.on("finish", () => {
        // Route pattern only: no ids from the path, no address, no headers.
        logger.debug(
          {
            route: `${route.method.toUpperCase()} ${route.path}`,
            status: res.statusCode,
            ms: Math.round(performance.now() - started),
          },
          "request",
        );
      });
      handle(route, handler, guard, readBody, accounts, options.federation, req, res).catch(next);
    };
    router[route.method](route.path, mount);
  }
  return router;
}

async function handle(
  route: RouteSpec,
  handler: (ctx: unknown) => Promise<unknown>,
  guard: ((ctx: unknown) => Promise<void>) | undefined,
  readBody: JsonBodyReader | null,
  accounts: AccountService,
  federation: RouterOptions["federation"],
  req: Request,
  res: Response,
): Promise<void> {
  let principal;
  let origin: string | undefined;
  let accessKey: string | undefined;
  const header = req.headers[accessKeyHeader];
  if (route.auth === "device-or-access-key" && req.headers.authorization === undefined) {
    // Sealed sender: the service checks the key (in this header, or per recipient in a
    // multi-recipient body) against the recipients; 401 when wrong, missing or unknown,
    // except for a recipient that accepts sealed messages from anyone.
    accessKey = typeof header === "string" ? header : undefined;
  } else if (route.auth === "server") {
    if (!federation) throw new HttpError("not_found", "Federation is off on this server");
    // A body is read only once the signature checks out; its digest is checked then (signedJsonBodyReader).
    origin = await federation.authenticate({
      method: req.method,
      url: req.originalUrl,
      headers: req.headers,
      body: route.body ? null : new Uint8Array(),
    });
  } else if (route.auth !== "none") {
    const credentials = parseBasicAuth(req.headers.authorization);
    // The same answer as for wrong credentials: no hint of what was wrong.
    if (!credentials) throw unauthorized();
    principal = await accounts.authenticate(
      credentials.username,
      credentials.password,
      req.ip ?? req.socket.remoteAddress ?? "",
    );
  }
  let params: unknown = {};
  if (route.params) {
    const parsed = route.params.safeParse(req.params);
    if (!parsed.success) throw invalidRequest(parsed.error, "params");
    params = parsed.data;
  }
  const clientAddress = req.ip ?? req.socket.remoteAddress ?? "";
  // Before the body is read: a caller refused here costs no buffering or parsing.
  await guard?.({ principal, accessKey, params, clientAddress, origin });
  let body: unknown;
  if (route.body && readBody) {
    await readBody(req, res, federation && ((bytes) => federation.checkBody(req.headers, bytes)));
    const parsed = route.body.safeParse(req.body);
    if (!parsed.success) throw invalidRequest(parsed.error, "body");
    body = parsed.data;
  }
  const result = await handler({ principal, accessKey, params, body, clientAddress, origin });
  if (route.success.schema) res.status(route.success.status).json(result);
  else res.status(route.success.status).end();
}

/** Maps errors to the error body: known refusals as they are, anything else as a logged 500. */
export function errorMiddleware(logger: Logger) {
  return (error: unknown, req: Request, res: Response, _next: NextFunction): void => {
    // Refused before its body was read (unknown path, no credentials): drain it unparsed, then close.
    if (hasUnreadBody(req)) discardRest(req, res);
    const known = toHttpError(error);
    if (!known) logger.error({ err: error }, "unhandled error");
    const answer = known ?? new HttpError("internal", "Internal error");
    // `type` overrides a Content-Type the handler set before failing (an attachment download's octet-stream).
    res.status(answer.status).set(answer.headers).type("application/json").json(answer.toBody());
  };
}

/** Express body-parser failures, a full disk and our own refusals as an HttpError; null for anything unexpected. */
export function toHttpError(error: unknown): HttpError | null {
  if (error instanceof HttpError) return error;
  // A full disk (SQLite, PostgreSQL, attachment files): 507 storage_full with Retry-After, nothing stored.
  const full = storageFullError(error);
  if (full) return full;
  // A transaction that could not start (or finish) in time: rolled back, 503 with Retry-After.
  const busy = databaseBusyError(error);
  if (busy) return busy;
  const type = (error as { type?: string } | null)?.type;
  if (type === tooDeepType) return tooDeeplyNested();
  if (type === "entity.too.large") return new HttpError("body_too_large", "The request body is too large");
  if (type === "entity.parse.failed") return new HttpError("malformed_json", "The request body is not valid JSON");
  if (type === "encoding.unsupported" || type === "charset.unsupported") {
    return new HttpError("invalid_request", "Unsupported body encoding");
  }
  // Express's router: a path with invalid percent-escapes.
  if (error instanceof URIError)
    return new HttpError("invalid_request", "The request path is not valid percent-encoding");
  // body-parser's other client errors (e.g. a corrupt gzip body) carry status 400 and expose.
  const { status, expose } = (error ?? {}) as { status?: unknown; expose?: unknown };
  if (status === 400 && expose === true)
    return new HttpError("malformed_json", "The request body could not be decoded");
  return null;
}
