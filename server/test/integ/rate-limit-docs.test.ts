/**
 * `/openapi.json` states, per operation, the rate limits that apply to it
 * (`x-rate-limit`) with the running server's settings, and the 429 answer
 * with `Retry-After`; the stated counts are the ones the server enforces.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  adminRoutes,
  authRateLimits,
  rateLimitInfo,
  routes,
  streamRoutes,
  type RateLimitName,
  type RouteSpec,
  type StreamRouteSpec,
} from "@zimchat/protocol";
import { roomyRateLimits, startServer, type TestServer } from "../support/harness.js";
import type { RateLimits } from "../../src/config.js";

type Json = Record<string, any>;

const allRoutes = [...Object.values(routes), ...Object.values(adminRoutes), ...Object.values(streamRoutes)] as (
  RouteSpec | StreamRouteSpec
)[];

function operationOf(doc: Json, route: RouteSpec | StreamRouteSpec): Json {
  const op = doc.paths[route.path.replace(/:([A-Za-z]+)/g, "{$1}")]?.[route.method];
  assert.ok(op, `${route.method} ${route.path} is documented`);
  return op;
}

describe("rate limits in /openapi.json", () => {
  // Settings no default has: the document must take them from the server's config.
  const rateLimits: RateLimits = {
    ...roomyRateLimits,
    usernameLookup: { points: 4, durationSeconds: 42 },
    linkCode: { points: 3, durationSeconds: 77 },
    preKeyBundle: { points: 9, durationSeconds: 13 },
  };
  let server: TestServer;
  let doc: Json;
  before(async () => {
    server = await startServer({ rateLimits });
    doc = (await server.http().get("/openapi.json")).body;
  });
  after(async () => server.stop());

  it("lists, on every operation, its limits with the configured count, window and key, and a 429 with Retry-After", () => {
    for (const route of allRoutes) {
      const op = operationOf(doc, route);
      const names: RateLimitName[] = [
        ...(route.auth === "device" || route.auth === "device-or-access-key" ? authRateLimits : []),
        ...(route.rateLimits ?? []),
      ];
      const stated = op["x-rate-limit"] as Json[];
      assert.ok(Array.isArray(stated), `${op.operationId}: x-rate-limit`);
      assert.deepEqual(
        stated.map((l) => [l.name, l.count, l.windowSeconds, l.key, l.exceeded]),
        names.map((n) => [
          n,
          rateLimits[n].points,
          rateLimits[n].durationSeconds,
          rateLimitInfo[n].key,
          rateLimitInfo[n].exceeded,
        ]),
        op.operationId,
      );
      if (stated.some((l) => l.exceeded === "refused")) {
        assert.ok(op.responses["429"]?.headers?.["Retry-After"], `${op.operationId}: 429 with Retry-After`);
        assert.match(op.responses["429"].description, /rate_limited|too_many_failed_logins/, op.operationId);
      }
    }
  });

  it("enforces the stated counts: the next request is 429 rate_limited with Retry-After within the window", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const calls: [string, () => Promise<import("supertest").Response>][] = [
      [
        "lookupUsername",
        () => server.http().get(`/v1/accounts/username/nobody_here`).set("Authorization", alice.authHeader),
      ],
      ["createLink", () => server.http().post("/v1/devices/links")],
      ["preKeyBundle", () => server.http().get(`/v1/keys/${bob.uuid}/1`).set("Authorization", alice.authHeader)],
    ];
    for (const [operationId, call] of calls) {
      const route = allRoutes.find((r) => operationOf(doc, r).operationId === operationId)!;
      const limit = (operationOf(doc, route)["x-rate-limit"] as Json[]).find((l) => l.name === route.rateLimits![0])!;
      for (let i = 0; i < limit.count; i++)
        assert.notEqual((await call()).status, 429, `${operationId} request ${i + 1} of ${limit.count}`);
      const refused = await call();
      assert.equal(refused.status, 429, `${operationId}: request ${limit.count + 1}`);
      assert.equal(refused.body.code, "rate_limited");
      const retryAfter = Number(refused.headers["retry-after"]);
      assert.ok(
        retryAfter >= 1 && retryAfter <= limit.windowSeconds,
        `${operationId}: Retry-After ${retryAfter} within ${limit.windowSeconds} s`,
      );
    }
  });

  it("states no limits on a server that runs without them", async () => {
    const free = await startServer({ rateLimits: false });
    try {
      const res = await free.http().get("/openapi.json");
      for (const operations of Object.values(res.body.paths as Record<string, Record<string, Json>>)) {
        for (const op of Object.values(operations)) assert.deepEqual(op["x-rate-limit"], [], op.operationId);
      }
    } finally {
      await free.stop();
    }
  });
});
