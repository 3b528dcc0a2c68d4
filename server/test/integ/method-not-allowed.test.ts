/**
 * A known path asked with a method it does not serve answers 405
 * `method_not_allowed` with `Allow`; an unknown path answers 404. Every path
 * of `/openapi.json` is tried with every method, so a new route is covered
 * without touching this file.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { definePlugin } from "@zimchat/plugin-sdk/server";
import { errorBodySchema } from "@zimchat/protocol";
import { z } from "zod";
import type { Response } from "supertest";
import { startServer, type TestServer } from "../support/harness.js";

const methods = ["get", "put", "post", "delete", "patch"] as const;
const adminToken = "method-test-admin-token-0123456789abcdef";

type Paths = Record<string, Record<string, unknown>>;

/** A concrete path for an OpenAPI path template; the parameter value matches no literal segment. */
function concrete(template: string): string {
  return template.replace(/\{[^}]+\}/g, "zz9");
}

/** The methods the document lists for every template the concrete path matches (plus HEAD with GET). */
function expectedAllow(paths: Paths, path: string): string {
  const allowed = new Set<string>();
  for (const [template, operations] of Object.entries(paths)) {
    const pattern = new RegExp(
      `^${template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^}]+\\?\}/g, "[^/]+")}$`,
    );
    if (!pattern.test(path)) continue;
    for (const method of Object.keys(operations)) allowed.add(method.toUpperCase());
  }
  if (allowed.has("GET")) allowed.add("HEAD");
  return [...allowed].sort().join(", ");
}

function assertNotAllowed(res: Response, allow: string, what: string): void {
  assert.equal(res.status, 405, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
  assert.match(res.headers["content-type"] ?? "", /application\/json/, what);
  assert.equal(res.body.code, "method_not_allowed", what);
  assert.ok(errorBodySchema.safeParse(res.body).success, `${what}: the error body shape`);
  assert.equal(res.headers.allow, allow, `${what}: Allow`);
}

describe("unserved methods on known paths", () => {
  let server: TestServer;
  let paths: Paths;
  let auth: string;
  before(async () => {
    server = await startServer({ adminToken });
    paths = (await server.http().get("/openapi.json")).body.paths;
    auth = (await server.register()).authHeader;
  });
  after(async () => server.stop());

  it("answers 405 with Allow for every method a documented path does not serve, with or without credentials", async () => {
    let tried = 0;
    for (const [template, operations] of Object.entries(paths)) {
      const path = concrete(template);
      const allow = expectedAllow(paths, path);
      for (const method of methods) {
        // A method another template serves on the same concrete path (DELETE /v1/devices/{deviceId} on
        // /v1/devices/links) is not unserved.
        if (method in operations || allow.split(", ").includes(method.toUpperCase())) continue;
        const what = `${method.toUpperCase()} ${path}`;
        const credentials = template.startsWith("/admin/") ? `Bearer ${adminToken}` : auth;
        assertNotAllowed(
          await server.http()[method](path).set("Authorization", credentials).send({ any: "body" }),
          allow,
          what,
        );
        const anonymous = await server.http()[method](path);
        // The admin API checks its token first, for every path under /admin: no hint without it.
        if (template.startsWith("/admin/")) assert.equal(anonymous.status, 401, `${what} without the admin token`);
        else assertNotAllowed(anonymous, allow, `${what} without credentials`);
        tried++;
      }
    }
    assert.ok(tried > 50, `tried ${tried} method and path pairs`);
    // The examples a client developer met.
    assertNotAllowed(
      await server.http().delete("/v1/accounts/username/x").set("Authorization", auth),
      "GET, HEAD",
      "DELETE /v1/accounts/username/x",
    );
    assertNotAllowed(await server.http().put("/openapi.json"), "GET, HEAD", "PUT /openapi.json");
    assertNotAllowed(await server.http().put("/asyncapi.json"), "GET, HEAD", "PUT /asyncapi.json");
    assertNotAllowed(await server.http().post("/metrics"), "GET, HEAD", "POST /metrics");
  });

  it("serves every documented method on the same paths (no 405 for them)", async () => {
    for (const [template, operations] of Object.entries(paths)) {
      for (const method of Object.keys(operations) as (typeof methods)[number][]) {
        const res = await server.http()[method](concrete(template));
        assert.notEqual(res.status, 405, `${method.toUpperCase()} ${template}`);
      }
    }
  });

  it("answers HEAD on a GET path, and 404 not_found for unknown paths whatever the method", async () => {
    assert.equal((await server.http().head("/openapi.json")).status, 200);
    for (const path of [
      "/",
      "/nope",
      "/v2/keys/count",
      "/v1/keys/zz9/1/extra",
      "/v1/accounts/username",
      "/openapi.yaml",
      "/admin/v1/nope",
    ]) {
      for (const method of methods) {
        const res = await server
          .http()
          [method](path)
          .set("Authorization", path.startsWith("/admin/") ? `Bearer ${adminToken}` : auth);
        assert.equal(res.status, 404, `${method.toUpperCase()} ${path}: ${res.status}`);
        assert.equal(res.body.code, "not_found", `${method.toUpperCase()} ${path}`);
      }
    }
  });

  it("keeps the admin paths unknown (404) on a server without an admin token", async () => {
    const plain = await startServer();
    try {
      for (const template of Object.keys(paths).filter((p) => p.startsWith("/admin/"))) {
        const res = await plain.http().patch(concrete(template));
        assert.equal(res.status, 404, `PATCH ${template}: ${res.status}`);
        assert.equal(res.body.code, "not_found");
      }
    } finally {
      await plain.stop();
    }
  });

  it("covers plugin routes: 405 with the plugin route's methods, 404 for a path no plugin serves", async () => {
    const plugin = definePlugin({
      name: "methods",
      configSchema: z.object({}),
      setup(ctx) {
        ctx.route({ method: "GET", path: "/v1/things/:id", handler: ({ params }) => ({ body: { id: params.id } }) });
        ctx.route({ method: "POST", path: "/v1/things/:id", handler: () => ({ status: 201, body: {} }) });
        return {};
      },
    });
    const withPlugin = await startServer({ plugins: [{ use: plugin }] });
    try {
      assert.equal((await withPlugin.http().get("/plugins/methods/v1/things/7")).status, 200);
      assertNotAllowed(
        await withPlugin.http().delete("/plugins/methods/v1/things/7"),
        "GET, HEAD, POST",
        "DELETE on a plugin route",
      );
      const unknown = await withPlugin.http().delete("/plugins/methods/v1/other");
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.code, "not_found");
    } finally {
      await withPlugin.stop();
    }
  });
});
