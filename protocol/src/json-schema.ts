import { z } from "zod";
import { base64LengthText } from "./primitives.js";

/** A JSON Schema object. */
export type JsonSchema = Record<string, unknown>;

/**
 * Keeps the decoded length in the description of every base64 field
 * (`x-decoded-bytes`, set by `base64Bytes`): a field-level `.describe()`
 * replaces the schema's own description, so the length is put back in front.
 */
function stateDecodedLengths(node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) stateDecodedLengths(item);
    return;
  }
  if (!node || typeof node !== "object") return;
  const schema = node as JsonSchema;
  const bytes = schema["x-decoded-bytes"] as { min: number; max: number } | undefined;
  if (bytes) {
    const text = base64LengthText(bytes.min, bytes.max);
    const description = typeof schema.description === "string" ? schema.description : "";
    if (!description.startsWith(text)) schema.description = description ? `${text}: ${description}` : text;
  }
  for (const value of Object.values(schema)) stateDecodedLengths(value);
}

/**
 * A zod schema as JSON Schema (input side), with shared schemas (those with
 * a registry id) moved into `refs` and referenced as
 * `#/components/schemas/<id>`: the layout of OpenAPI 3.1 (draft 2020-12) and
 * AsyncAPI 3.0 (whose default schema format is a superset of draft-07).
 */
export function toComponentSchema(
  schema: z.ZodType,
  refs: Map<string, JsonSchema>,
  target: "draft-2020-12" | "draft-7" = "draft-2020-12",
): JsonSchema {
  const generated = z.toJSONSchema(schema, { target, io: "input", unrepresentable: "any" });
  const text = JSON.stringify(generated)
    .replaceAll('"#/$defs/', '"#/components/schemas/')
    .replaceAll('"#/definitions/', '"#/components/schemas/');
  const json = JSON.parse(text) as JsonSchema & {
    $defs?: Record<string, JsonSchema>;
    definitions?: Record<string, JsonSchema>;
    $schema?: string;
  };
  const { $defs, definitions, $schema: _ignored, ...rest } = json;
  stateDecodedLengths(rest);
  for (const [id, def] of Object.entries($defs ?? definitions ?? {})) {
    stateDecodedLengths(def);
    refs.set(id, def);
  }
  return rest;
}
