import { Router, type Request, type Response } from "express";
import type { DeviceRef, PluginRequest, PluginResponse } from "@zimchat/plugin-sdk/server";
import { HttpError } from "../errors.js";
import type { Logger } from "../logger.js";
import { unauthorized, type AccountService } from "../services/account-service.js";
import { parseBasicAuth } from "../http/basic-auth.js";
import { jsonBodyReader, type RefusalCounter } from "../http/json-body.js";
import { limits } from "@zimchat/protocol";
import { settle, type PluginHost } from "./plugin-host.js";

/**
 * Mounts the plugins' routes under `/plugins/<name>/`. Bodies are JSON, read
 * after authentication with the default limit (`limits.defaultMaxBodyBytes`)
 * and nesting bound, like the `/v1` routes; `auth: "device"`
 * checks HTTP Basic device credentials like the `/v1` routes. A handler
 * answers `{ status?, body? }`: 200 with the body as JSON, or 204 without
 * one; to refuse, it returns a 4xx status with an error body such as
 * `{ code, message }`. A handler that throws, times out (the plugin hook
 * budget) or answers something malformed is a plugin failure: the client
 * gets 500 `internal`, the log names the plugin and the route pattern.
 */
export function createPluginRouter(
  host: PluginHost,
  accounts: AccountService,
  logger: Logger,
  refusals?: RefusalCounter,
): Router {
  const router = Router();
  const readBody = jsonBodyReader(limits.defaultMaxBodyBytes, refusals);
  for (const { plugin, route } of host.routes) {
    const pattern = `${route.method} /plugins/${plugin}${route.path}`;
    const method = route.method.toLowerCase() as "get" | "post" | "put" | "delete";
    router[method](`/plugins/${plugin}${route.path}`, (req, res, next) => {
      const started = performance.now();
      res.on("finish", () => {
        // Route pattern only: no ids from the path, no address, no headers.
        logger.debug(
          { route: pattern, status: res.statusCode, ms: Math.round(performance.now() - started) },
          "request",
        );
      });
      (async () => {
        let device: DeviceRef | null = null;
        if (route.auth === "device") {
          const credentials = parseBasicAuth(req.headers.authorization);
          if (!credentials) throw unauthorized();
          const principal = await accounts.authenticate(
            credentials.username,
            credentials.password,
            req.ip ?? req.socket.remoteAddress ?? "",
          );
          device = { accountId: principal.accountId, deviceId: principal.deviceId };
        }
        await readBody(req, res);
        const request: PluginRequest = {
          params: { ...req.params } as Record<string, string>,
          query: flatQuery(req),
          body: req.body,
          device,
        };
        const outcome = await settle(
          () => host.activity.run({ plugin, hook: "route" }, () => route.handler(request)),
          host.hookTimeoutMs,
        );
        const answer = outcome.ok ? checkResponse(outcome.value) : null;
        if (!outcome.ok || !answer) {
          host.logFailure(
            plugin,
            "route",
            outcome.ok ? new Error(`route ${pattern} answered something other than { status?, body? }`) : outcome.error,
          );
          throw new HttpError("internal", "Internal error");
        }
        try {
          send(res, answer);
        } catch (error) {
          // A body JSON cannot encode (a BigInt, a cycle).
          host.logFailure(plugin, "route", error);
          throw new HttpError("internal", "Internal error");
        }
      })().catch(next);
    });
  }
  return router;
}

/** Query parameters as single strings (the first of repeated ones; nested objects are dropped). */
function flatQuery(req: Request): Record<string, string | undefined> {
  const query: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(req.query as Record<string, unknown>)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (typeof first === "string") query[key] = first;
  }
  return query;
}

/** A handler's answer, checked: a status in 200..599 (default 200, or 204 without a body). */
function checkResponse(value: unknown): (Required<Pick<PluginResponse, "status">> & PluginResponse) | null {
  if (typeof value !== "object" || value === null) return null;
  const { status, body } = value as PluginResponse;
  if (status !== undefined && (!Number.isInteger(status) || status < 200 || status > 599)) return null;
  return { status: status ?? (body === undefined ? 204 : 200), body };
}

function send(res: Response, answer: { status: number; body?: unknown }): void {
  if (answer.body === undefined || answer.status === 204 || answer.status === 304) res.status(answer.status).end();
  else res.status(answer.status).json(answer.body);
}
