/**
 * Hostile inputs for the fuzz test: JSON values of the wrong kind, mutations
 * of valid bodies (a field replaced, removed or added; arrays past their
 * limit; deep nesting), raw bodies that are not JSON, and path segments,
 * content types and auth headers an attacker would try.
 */
import fc from "fast-check";

/** Characters node's HTTP client accepts in a header value (it refuses control characters). */
const headerUnit = fc
  .integer({ min: 0x20, max: 0xff })
  .filter((c) => c !== 0x7f)
  .map((c) => String.fromCharCode(c));

/** A header value that node's client will put on the wire. */
export const headerText = (maxLength = 64): fc.Arbitrary<string> => fc.string({ unit: headerUnit, maxLength });

/** A JSON value nested `depth` levels deep (arrays or objects). */
export function nested(depth: number, kind: "array" | "object"): unknown {
  let value: unknown = 0;
  for (let i = 0; i < depth; i++) value = kind === "array" ? [value] : { a: value };
  return value;
}

/** JSON values of every kind, including the edges: huge and negative numbers, long and odd strings, deep nesting. */
export const garbageValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    true,
    false,
    0,
    -1,
    -0,
    1.5,
    2 ** 31,
    -(2 ** 31),
    2 ** 53,
    -(2 ** 53),
    1e308,
    -1e308,
    5e-324,
    "",
    " ",
    "\u0000",
    "\ud800",
    "\u202e",
    "𝕫𝕚𝕞",
    "%00",
    "../..",
    "__proto__",
    "constructor",
    "toString",
    "=",
    "====",
    [],
    {},
    [[]],
    { __proto__: null },
  ),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.integer({ min: 1_000, max: 70_000 }).map((n) => "A".repeat(n)),
  fc.integer({ min: 1, max: 1_000 }).map((n) => nested(n, "array")),
  fc.integer({ min: 1, max: 1_000 }).map((n) => nested(n, "object")),
  fc.constantFrom(1_001, 2_000).map((n) => Array.from({ length: n }, (_, i) => i)),
  fc.array(fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean()), { maxLength: 6 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { maxKeys: 4 }),
);

/** One change to a JSON value: which node (index into its nodes, modulo), what to do, and what to put. */
export interface Mutation {
  at: number;
  kind: "replace" | "remove" | "add-key" | "grow-array" | "wrap";
  key: string;
  value: unknown;
}

export const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom("replace", "remove", "add-key", "grow-array", "wrap"),
  key: fc.oneof(
    fc.constantFrom("__proto__", "constructor", "prototype", "messages", "extra", ""),
    fc.string({ maxLength: 12 }),
  ),
  value: garbageValue,
});

type Path = (string | number)[];

/** Paths to a value's nodes, the first few hundred within a few levels (garbage can be 1,000 deep or 2,000 long). */
function nodes(value: unknown, path: Path = [], out: Path[] = []): Path[] {
  if (out.length >= 300 || path.length > 6) return out;
  out.push(path);
  if (Array.isArray(value)) value.forEach((v, i) => nodes(v, [...path, i], out));
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) nodes(v, [...path, k], out);
  return out;
}

/** Largest mutated value, as JSON: grown arrays share their elements, so growth could compound to gigabytes. */
const maxMutatedBytes = 3 * 1024 * 1024;

/** Applies mutations to a deep copy of a JSON value; one that would make it larger than 3 MiB as JSON is skipped. */
export function mutate(value: unknown, mutations: readonly Mutation[]): unknown {
  let root: unknown = value === undefined ? undefined : structuredClone(value);
  for (const m of mutations) {
    const before = root === undefined ? undefined : structuredClone(root);
    root = mutateOnce(root, m);
    if (!(jsonLength(root) <= maxMutatedBytes)) root = before;
  }
  return root;
}

/** Characters of a value as JSON; Infinity when it is too large to serialise at all. */
function jsonLength(value: unknown): number {
  try {
    return JSON.stringify(value ?? null).length;
  } catch {
    return Infinity;
  }
}

function mutateOnce(value: unknown, m: Mutation): unknown {
  let root = value;
  {
    const all = nodes(root);
    const path = all[m.at % all.length] ?? [];
    const parent = path.slice(0, -1).reduce<any>((node, k) => node?.[k], root);
    const last = path.at(-1);
    const target = path.reduce<any>((node, k) => node?.[k], root);
    const set = (v: unknown): void => {
      if (last === undefined) root = v;
      else if (parent && typeof parent === "object") parent[last] = v;
    };
    switch (m.kind) {
      case "replace":
        set(m.value);
        break;
      case "remove":
        if (last === undefined) root = undefined;
        else if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else if (parent && typeof parent === "object") delete parent[last];
        break;
      case "add-key":
        // defineProperty: a `__proto__` key becomes an own property, as JSON.parse makes it on the server.
        if (target && typeof target === "object" && !Array.isArray(target))
          Object.defineProperty(target, m.key, {
            value: m.value,
            enumerable: true,
            writable: true,
            configurable: true,
          });
        else set({ [m.key]: m.value });
        break;
      case "grow-array":
        if (Array.isArray(target) && target.length)
          set(Array.from({ length: Math.min(2_000, target.length * 300 + 1) }, (_, i) => target[i % target.length]));
        else set([target, target]);
        break;
      case "wrap":
        set([target]);
        break;
    }
  }
  return root;
}

/** Raw request bodies that are not (valid) JSON, or JSON with tricks in it. */
export const rawBody: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc.constantFrom(
    "",
    "{",
    "}",
    "[",
    "null",
    "true",
    "0",
    '"x"',
    "{}",
    "[]",
    '{"a":1,"a":2}',
    '{"__proto__":{"polluted":1}}',
    '{"constructor":{"prototype":{"polluted":1}}}',
    "1e999999",
    "-0",
    '"\\ud800"',
    "\u0000",
    "\ufeff{}",
    "a=1&b=2",
    '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--',
  ),
  fc.integer({ min: 1, max: 100_000 }).map((n) => "[".repeat(n)),
  fc.integer({ min: 1, max: 20_000 }).map((n) => "[".repeat(n) + "]".repeat(n)),
  fc.integer({ min: 1, max: 20_000 }).map((n) => '{"a":'.repeat(n) + "1" + "}".repeat(n)),
  fc.integer({ min: 100, max: 5_000 }).map((n) => "9".repeat(n)),
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)),
);

/** Content types, right, wrong and odd. */
export const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  fc.constantFrom(
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    undefined,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/json; charset=utf-16",
    "application/json; charset=latin1",
    "application/json; charset=bogus",
    "application/merge-patch+json",
    "*/*",
    "",
  ),
  headerText(40),
);

/** Content-Encoding values; most requests have none. */
export const contentEncoding: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 12, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constantFrom("gzip", "deflate", "br", "identity", "bogus", "gzip, gzip") },
);

/** A path segment an attacker would try in place of an id. */
export const badSegment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "",
    "%",
    "%z",
    "%zz",
    "%c0%80",
    "%00",
    "%ff",
    "%2F",
    "%2e%2e",
    "..",
    ".",
    "*",
    "**",
    "0",
    "-1",
    "128",
    "1.5",
    "1e3",
    "%20",
    "00000001",
    "null",
    "undefined",
  ),
  fc.string({ unit: "binary", maxLength: 40 }).map(encodeURIComponent),
  fc.integer({ min: 100, max: 6_000 }).map((n) => "a".repeat(n)),
  fc.integer({ min: 1, max: 2_000 }).map((n) => "%41".repeat(n)),
);

/** Authorization headers that are not valid credentials. */
export const badAuthorization: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "Basic",
    "Basic ",
    "Basic !!!",
    "basic Zm9vOmJhcg==",
    "Bearer",
    "Bearer x",
    "Digest a=b",
    "Basic Og==",
    "Basic OjpkZWFk",
  ),
  headerText(64),
  fc
    .tuple(fc.string({ unit: "binary", maxLength: 60 }), fc.string({ unit: "binary", maxLength: 60 }))
    .map(([u, p]) => `Basic ${Buffer.from(`${u}:${p}`).toString("base64")}`),
  fc.integer({ min: 200, max: 7_000 }).map((n) => `Basic ${"A".repeat(n)}`),
);
