/**
 * fast-check arbitraries from the protocol's zod (v4) schemas, for the fuzz
 * test: values shaped like what each schema accepts. It knows the schema
 * kinds the protocol uses and throws for any other, so a new kind in
 * protocol/ makes the fuzz test fail loudly rather than fuzz less.
 *
 * (The npm `zod-fast-check` targets zod 3; this mapper is small enough to own.)
 *
 * Refinements cannot be read back from a schema, so values are "valid-shaped",
 * not always valid: base64 strings decode to a length near the string's
 * maximum (exactly right for fixed-size keys and signatures) or to a few
 * bytes. `hints` replaces a field, by its name, with realistic values
 * (real account ids, real ciphertexts), mixed with the generated ones, so
 * requests get past validation into the services.
 */
import fc from "fast-check";
import { z } from "zod";

/** Field name → an arbitrary of realistic values for it (used half of the time). */
export type Hints = Readonly<Record<string, fc.Arbitrary<unknown>>>;

type Def = { type: string; checks?: { _zod: { def: CheckDef } }[]; [key: string]: unknown };
type CheckDef = {
  check: string;
  format?: string;
  pattern?: RegExp;
  minimum?: number;
  maximum?: number;
  value?: number;
  inclusive?: boolean;
};

/** Longest array a valid-shaped value has (mutations go beyond limits). */
const maxArrayLength = 4;
/** Base64 fields larger than this many bytes get short values only (megabyte fields stay cheap). */
const maxNearLimitBytes = 4096;

function checksOf(def: Def): CheckDef[] {
  return (def.checks ?? []).map((c) => c._zod.def);
}

/** An arbitrary of values shaped like `schema` accepts. */
export function arbitraryFor(schema: z.ZodType, hints: Hints = {}, field = ""): fc.Arbitrary<unknown> {
  const generated = fromDef(schema, hints);
  const hint = field ? hints[field] : undefined;
  return hint ? fc.oneof(hint, generated) : generated;
}

function fromDef(schema: z.ZodType, hints: Hints): fc.Arbitrary<unknown> {
  const def = (schema as unknown as { _zod: { def: Def } })._zod.def;
  switch (def.type) {
    case "string":
      return stringArbitrary(schema, checksOf(def));
    case "number":
      return numberArbitrary(checksOf(def));
    case "boolean":
      return fc.boolean();
    case "literal":
      return fc.constantFrom(...(def.values as unknown[]));
    case "enum":
      return fc.constantFrom(...Object.values(def.entries as Record<string, unknown>));
    case "optional":
    case "default":
      return arbitraryFor(def.innerType as z.ZodType, hints);
    case "nullable":
      return fc.option(arbitraryFor(def.innerType as z.ZodType, hints), { nil: null });
    case "pipe":
      // A transform chain (`.transform(Number).pipe(...)`) accepts what its input side accepts.
      return fromDef(def.in as z.ZodType, hints);
    case "union":
      return fc.oneof(...(def.options as z.ZodType[]).map((o) => arbitraryFor(o, hints)));
    case "array": {
      const checks = checksOf(def);
      const min = checks.find((c) => c.check === "min_length")?.minimum ?? 0;
      const max = checks.find((c) => c.check === "max_length")?.maximum ?? maxArrayLength;
      return fc.array(arbitraryFor(def.element as z.ZodType, hints), {
        minLength: min,
        maxLength: Math.max(min, Math.min(max, maxArrayLength)),
      });
    }
    case "object": {
      const shape = def.shape as Record<string, z.ZodType>;
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      const requiredKeys: string[] = [];
      for (const [key, field] of Object.entries(shape)) {
        model[key] = arbitraryFor(field, hints, key);
        const kind = (field as unknown as { _zod: { def: Def } })._zod.def.type;
        if (kind !== "optional" && kind !== "default") requiredKeys.push(key);
      }
      return fc.record(model, { requiredKeys });
    }
    default:
      throw new Error(`zod-arbitrary: no generator for zod schema kind "${def.type}"; add one`);
  }
}

function stringArbitrary(schema: z.ZodType, checks: CheckDef[]): fc.Arbitrary<string> {
  const maxLength = checks.find((c) => c.check === "max_length")?.maximum;
  const minLength = checks.find((c) => c.check === "min_length")?.minimum ?? 0;
  const base64 =
    (z.globalRegistry.get(schema) as { contentEncoding?: string } | undefined)?.contentEncoding === "base64";
  if (base64) {
    // The decoded-length bounds live in a refinement: find which candidate lengths the schema itself accepts.
    const maxBytes = ((maxLength ?? 64) / 4) * 3;
    const candidates = [
      ...(maxBytes <= maxNearLimitBytes ? [maxBytes, maxBytes - 1, maxBytes - 2] : []),
      ...Array.from({ length: 49 }, (_, i) => i),
    ];
    const accepted = candidates.filter((n) => schema.safeParse(Buffer.alloc(n).toString("base64")).success);
    const refused = candidates.filter((n) => !accepted.includes(n));
    const lengths =
      accepted.length && refused.length
        ? fc.oneof(
            { weight: 6, arbitrary: fc.constantFrom(...accepted) },
            { weight: 1, arbitrary: fc.constantFrom(...refused) },
          )
        : fc.constantFrom(...candidates);
    return lengths
      .chain((n) => fc.uint8Array({ minLength: n, maxLength: n }))
      .map((b) => Buffer.from(b).toString("base64"));
  }
  const pattern = checks.find((c) => c.check === "string_format" && c.format === "regex")?.pattern;
  if (pattern) {
    // Stretched or cut to the length bounds rather than filtered (a filter can spin for long on a rare length);
    // repeating a match keeps `^[class]+$` patterns matching.
    return (simplePattern(pattern) ?? fc.stringMatching(pattern)).map((s) =>
      s.length < minLength ? s.padEnd(minLength, s || "A") : maxLength !== undefined ? s.slice(0, maxLength) : s,
    );
  }
  return fc.string({ minLength, maxLength: Math.min(maxLength ?? 64, 64) });
}

function numberArbitrary(checks: CheckDef[]): fc.Arbitrary<number> {
  const integer = checks.some((c) => c.check === "number_format" && (c.format === "safeint" || c.format === "int32"));
  const lower = checks.find((c) => c.check === "greater_than");
  const upper = checks.find((c) => c.check === "less_than");
  if (integer) {
    const min = lower ? (lower.value as number) + (lower.inclusive ? 0 : 1) : Number.MIN_SAFE_INTEGER;
    const max = upper ? (upper.value as number) - (upper.inclusive ? 0 : 1) : Number.MAX_SAFE_INTEGER;
    // The bounds themselves are where off-by-one bugs live.
    return fc.oneof(fc.integer({ min, max }), fc.constantFrom(min, max));
  }
  return fc.double({
    noNaN: true,
    noDefaultInfinity: true,
    ...(lower && { min: lower.value }),
    ...(upper && { max: upper.value }),
  });
}

/**
 * A fast generator for the protocol's common pattern shape: a sequence of
 * character classes with counts (`[0-9a-f]{8}`, `[a-z0-9_.]{3,32}`, `[A-Za-z0-9_-]+`)
 * and literal characters. fast-check's `stringMatching` builds each character
 * through several arbitraries, which made id generation most of the fuzz
 * test's CPU; here one integer seeds a small PRNG (xorshift32) that picks the
 * characters, so a value is still determined by the run's seed. Undefined for
 * any other pattern (the caller falls back to `stringMatching`).
 */
function simplePattern(pattern: RegExp): fc.Arbitrary<string> | undefined {
  const source = pattern.source;
  if (pattern.flags || !source.startsWith("^") || !source.endsWith("$")) return undefined;
  const tokens: { chars: string; min: number; max: number }[] = [];
  const token = /\[(\^?)((?:\\.|[^\]\\])+)\](?:\{(\d+)(?:,(\d+))?\}|(\+))?|([A-Za-z0-9_\-:@ ])/y;
  token.lastIndex = 1;
  while (token.lastIndex < source.length - 1) {
    const m = token.exec(source);
    if (!m || m[1]) return undefined;
    if (m[6] !== undefined) {
      tokens.push({ chars: m[6], min: 1, max: 1 });
      continue;
    }
    const chars = expandClass(m[2] as string);
    if (!chars) return undefined;
    const min = m[3] !== undefined ? Number(m[3]) : 1;
    const max = m[5] ? 64 : m[4] !== undefined ? Number(m[4]) : min;
    tokens.push({ chars, min, max });
  }
  if (token.lastIndex !== source.length - 1) return undefined;
  return fc.noBias(fc.integer({ min: 1, max: 0x7fffffff })).map((seed) => {
    let state = seed;
    const next = (): number => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return state >>> 0;
    };
    let out = "";
    for (const t of tokens) {
      const length = t.min + (next() % (t.max - t.min + 1));
      for (let i = 0; i < length; i++) out += t.chars[next() % t.chars.length];
    }
    return out;
  });
}

/**
 * The characters of a regex character class body (`0-9a-f`, `A-Za-z0-9+/=_-`); undefined for escapes it does not know.
 */
function expandClass(body: string): string | undefined {
  let chars = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c === "\\") return undefined;
    const to = body[i + 2];
    if (body[i + 1] === "-" && to !== undefined) {
      for (let code = c.charCodeAt(0); code <= to.charCodeAt(0); code++) chars += String.fromCharCode(code);
      i += 2;
    } else chars += c;
  }
  return chars || undefined;
}
