/**
 * Every fixed-length base64 field of a request body in `/openapi.json`
 * states its decoded length so that a generator makes valid values: a value
 * generated from the field's own constraints (random bytes of
 * `x-decoded-bytes`, kept when it matches `pattern`) passes the server's
 * validation, and a wrong length, an unpadded or a url-safe value is refused
 * with 400 `invalid_request` naming the field. The fields are found in the
 * document, so a new one is covered without touching this file (and fails
 * until its operation has an example body here).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { roomyRateLimits, startServer, type TestServer } from "../support/harness.js";
import { setAccess } from "../support/sealed.js";
import { SignalDevice } from "@zimchat/testing/signal";

type Json = Record<string, any>;
/** A field's place in a body: property names, and `0` for "the first item". */
type FieldPath = (string | 0)[];

interface Base64Field {
  path: FieldPath;
  schema: Json;
  bytes: number;
}

function deref(doc: Json, schema: Json): Json {
  let node = schema;
  while (node.$ref)
    node = node.$ref
      .slice(2)
      .split("/")
      .reduce((n: Json, part: string) => n[part], doc);
  return node;
}

/** The fixed-length base64 fields under a schema. */
function base64Fields(doc: Json, schema: Json, path: FieldPath = [], out: Base64Field[] = []): Base64Field[] {
  const node = deref(doc, schema);
  const bytes = node["x-decoded-bytes"] as { min: number; max: number } | undefined;
  if (bytes && bytes.min === bytes.max) out.push({ path, schema: node, bytes: bytes.min });
  for (const [name, property] of Object.entries((node.properties ?? {}) as Record<string, Json>))
    base64Fields(doc, property, [...path, name], out);
  if (node.items) base64Fields(doc, node.items, [...path, 0], out);
  for (const variant of [...(node.anyOf ?? []), ...(node.oneOf ?? []), ...(node.allOf ?? [])])
    base64Fields(doc, variant, path, out);
  return out;
}

/**
 * A value made from the field's constraints alone: random bytes of the stated length, until one matches the pattern.
 */
function generate(field: Base64Field): string {
  const pattern = new RegExp(field.schema.pattern);
  for (let i = 0; i < 100_000; i++) {
    const value = randomBytes(field.bytes).toString("base64");
    if (pattern.test(value)) return value;
  }
  throw new Error(`no value of ${field.bytes} bytes matches ${field.schema.pattern}`);
}

function withField(body: unknown, path: FieldPath, value: string): unknown {
  const copy = structuredClone(body) as Json;
  let node: Json = copy;
  for (const part of path.slice(0, -1)) {
    assert.ok(node[part] !== undefined, `the example body has ${path.join(".")}`);
    node = node[part];
  }
  const last = path.at(-1)!;
  assert.ok(last in node, `the example body has ${path.join(".")}`);
  node[last] = value;
  return copy;
}

describe("decoded lengths of base64 fields", () => {
  let server: TestServer;
  let doc: Json;
  /** An example body per operation (one that passes validation), with its caller. */
  let examples: Record<string, { body: () => unknown; headers: Record<string, string> }>;
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits });
    doc = (await server.http().get("/openapi.json")).body;
    const alice = await server.register();
    const bob = await server.register();
    const bobKey = await setAccess(server, bob);
    const fresh = new SignalDevice();
    const withSignedKeys = (d: SignalDevice): Json => ({
      ...d.keyUpload(1, 1),
      signedPreKey: d.signedPreKey(),
      pqLastResortPreKey: d.kyberPreKey(),
    });
    const auth = { Authorization: alice.authHeader };
    examples = {
      register: {
        body: () => fresh.registration(`b64_${process.pid}_${Math.floor(Math.random() * 1e9)}`),
        headers: {},
      },
      uploadKeys: { body: () => withSignedKeys(alice), headers: auth },
      setAttributes: {
        body: () => ({ accessKey: randomBytes(16).toString("base64"), unrestrictedAccess: false }),
        headers: auth,
      },
      resetIdentity: {
        body: () => {
          const { identityKey, signedPreKey, pqLastResortPreKey, registrationId } = fresh.registration("unused");
          return { identityKey, signedPreKey, pqLastResortPreKey, registrationId };
        },
        headers: auth,
      },
      linkDevice: {
        body: () => {
          const { password, registrationId, signedPreKey, pqLastResortPreKey } = fresh.registration("unused");
          return { code: "A".repeat(22), password, registrationId, signedPreKey, pqLastResortPreKey };
        },
        headers: {},
      },
      sendMultiRecipient: {
        body: () => ({
          message: randomBytes(64).toString("base64"),
          accessKeys: [{ uuid: bob.uuid, accessKey: bobKey.toString("base64") }],
        }),
        headers: {},
      },
    };
  });
  after(async () => server.stop());

  it("states the length in every fixed-length base64 field: description, bounds and an exact pattern", () => {
    let count = 0;
    for (const operations of Object.values(doc.paths as Record<string, Record<string, Json>>)) {
      for (const op of Object.values(operations)) {
        const schema = op.requestBody?.content?.["application/json"]?.schema;
        for (const field of schema ? base64Fields(doc, schema) : []) {
          const what = `${op.operationId} ${field.path.join(".")}`;
          const text = Math.ceil(field.bytes / 3) * 4;
          assert.equal(field.schema.contentEncoding, "base64", what);
          assert.equal(field.schema.minLength, text, what);
          assert.equal(field.schema.maxLength, text, what);
          assert.match(field.schema.description, new RegExp(`of exactly ${field.bytes} bytes`), what);
          const value = generate(field);
          assert.equal(value.length, text, what);
          // Wrong lengths are outside the stated constraints too.
          for (const n of [field.bytes - 1, field.bytes + 1]) {
            const wrong = randomBytes(n).toString("base64");
            assert.ok(
              !new RegExp(field.schema.pattern).test(wrong) || wrong.length !== text,
              `${what}: ${n} bytes is outside the constraints`,
            );
          }
          count++;
        }
      }
    }
    // Keys, signatures and access keys in several bodies.
    assert.ok(count >= 15, `${count} fields`);
  });

  it("accepts a value generated from each field's constraints and refuses a wrong length with 400 naming the field", async () => {
    const paths = doc.paths as Record<string, Record<string, Json>>;
    const seen = new Set<string>();
    for (const [template, operations] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(operations)) {
        const schema = op.requestBody?.content?.["application/json"]?.schema;
        const fields = schema ? base64Fields(doc, schema) : [];
        if (!fields.length) continue;
        // A federation route takes only signed requests: its fields are checked in test/federation/delivery.test.ts.
        if ((op.security as Json[] | undefined)?.some((s) => "serverSignature" in s)) continue;
        const example = examples[op.operationId];
        assert.ok(example, `an example body for ${op.operationId}`);
        seen.add(op.operationId);
        const send = (body: unknown) =>
          (server.http() as unknown as Record<string, (p: string) => import("supertest").Test>)[method]!(template)
            .set(example.headers)
            .send(body as object);
        for (const field of fields) {
          const what = `${op.operationId} ${field.path.join(".")}`;
          const good = await send(withField(example.body(), field.path, generate(field)));
          // Past validation: success, or a refusal of what the value means (a signature that does not verify, a code
          // that does not exist).
          assert.notEqual(
            good.body?.code,
            "invalid_request",
            `${what}: a generated value passes validation: ${JSON.stringify(good.body)}`,
          );
          assert.notEqual(
            good.body?.code,
            "invalid_key",
            `${what}: a generated key parses: ${JSON.stringify(good.body)}`,
          );
          assert.ok(good.status < 500, `${what}: ${good.status}`);
          const valid = generate(field);
          const wrongs = [
            ["short", randomBytes(field.bytes - 1).toString("base64")],
            ["long", randomBytes(field.bytes + 1).toString("base64")],
            ["url-safe", `-_${valid.slice(2)}`],
            ...(valid.endsWith("=") ? [["unpadded", valid.replace(/=+$/, "")]] : []),
          ];
          for (const [kind, value] of wrongs) {
            const res = await send(withField(example.body(), field.path, value!));
            assert.equal(res.status, 400, `${what} ${kind}: ${res.status} ${JSON.stringify(res.body)}`);
            assert.equal(res.body.code, "invalid_request", `${what} ${kind}`);
            const named = (res.body.issues as { path: (string | number)[] }[]).some(
              (i) => i.path.join(".") === ["body", ...field.path].join("."),
            );
            assert.ok(named, `${what} ${kind}: an issue names the field: ${JSON.stringify(res.body.issues)}`);
          }
        }
      }
    }
    assert.ok(seen.size >= 5, `operations tried: ${[...seen].join(", ")}`);
  });
});
