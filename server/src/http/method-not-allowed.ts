import type { RequestHandler } from "express";
import { match } from "path-to-regexp";
import { adminRoutes, routes, streamRoutes } from "@zimchat/protocol";
import type { ServerConfig } from "../config.js";
import { HttpError } from "../errors.js";
import type { PluginHost } from "../plugins/plugin-host.js";

/** A method and an Express-style path the app serves. */
export interface ServedRoute {
  method: string;
  path: string;
}

/**
 * Every method and path this app serves: the protocol's route tables (the
 * admin routes only with an admin token: without one they are absent),
 * `/metrics` when enabled, and the plugins' routes.
 */
export function servedRoutes(config: Pick<ServerConfig, "adminToken" | "metrics">, plugins: PluginHost): ServedRoute[] {
  return [
    ...Object.values(routes),
    ...Object.values(streamRoutes).filter((route) => config.adminToken !== undefined || route.auth !== "admin"),
    ...(config.adminToken !== undefined ? Object.values(adminRoutes) : []),
    ...(config.metrics ? [{ method: "get", path: "/metrics" }] : []),
    ...plugins.routes.map(({ plugin, route }) => ({ method: route.method, path: `/plugins/${plugin}${route.path}` })),
  ];
}

/**
 * Mounted after every router: a request whose path one of `served` matches,
 * with a method none of them serves, is answered 405 `method_not_allowed`
 * with `Allow` (RFC 9110 15.5.6). Anything else goes on (to the 404).
 * Paths match as Express matches them: case-insensitive, optional trailing slash.
 */
export function methodNotAllowed(served: readonly ServedRoute[]): RequestHandler {
  const matchers = served.map((route) => ({
    method: route.method.toUpperCase(),
    matches: match(route.path, { decode: false }),
  }));
  return (req, _res, next) => {
    const allowed = new Set(matchers.filter((m) => m.matches(req.path) !== false).map((m) => m.method));
    // Express answers HEAD with the GET route.
    if (allowed.has("GET")) allowed.add("HEAD");
    if (!allowed.size || allowed.has(req.method)) {
      next();
      return;
    }
    const allow = [...allowed].sort().join(", ");
    next(
      new HttpError("method_not_allowed", `${req.method} is not allowed here; allowed: ${allow}`, {}, { Allow: allow }),
    );
  };
}
