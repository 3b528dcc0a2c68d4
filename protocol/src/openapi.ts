import { z } from "zod";
import { missingCase } from "./missing-case.js";
import { errorBodySchema, errorStatus, type ErrorCode } from "./errors.js";
import { toComponentSchema, type JsonSchema } from "./json-schema.js";
import { limits } from "./limits.js";
import { base64Length, base64LengthText } from "./primitives.js";
import { authRateLimits, rateLimitEntries, type RateLimitSettings } from "./rate-limits.js";
import { adminRoutes, bodyLimitOf, routes, streamRoutes, type RouteSpec, type StreamRouteSpec } from "./routes.js";

/** Error codes any route can answer with. */
const commonErrors: ErrorCode[] = [
  "malformed_json",
  "too_deeply_nested",
  "invalid_request",
  "body_too_large",
  "rate_limited",
  "internal",
];
const authErrors: ErrorCode[] = ["unauthorized"];
/** A device of a disabled account authenticates with the right password, and is refused. */
const disabledErrors: ErrorCode[] = ["account_disabled"];
/** Every admin route answers 404 when the server has no admin token. */
const adminErrors: ErrorCode[] = ["not_found"];
/** A federation route: a bad or missing signature, a peer not accepted, and 404 while federation is off. */
const serverErrors: ErrorCode[] = ["federation_unauthorized", "peer_not_allowed", "not_found"];

function toSchema(schema: z.ZodType, refs: Map<string, JsonSchema>): JsonSchema {
  return toComponentSchema(schema, refs);
}

function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z]+)/g, "{$1}");
}

function securityOf(auth: RouteSpec["auth"]): Record<string, string[]>[] {
  switch (auth) {
    case "none":
      return [];
    case "device":
      return [{ deviceBasic: [] }];
    case "device-or-access-key":
      return [{ deviceBasic: [] }, { unidentifiedAccessKey: [] }];
    case "admin":
      return [{ adminBearer: [] }];
    case "server":
      return [{ serverSignature: [] }];
    default:
      return missingCase(auth);
  }
}

/** What the OpenAPI document says about the server that serves it. */
export interface OpenApiInfo {
  version: string;
  serverName: string;
  /**
   * The server's rate limits as configured (`false`: none); each operation
   * states those that apply to it as `x-rate-limit`. Absent: not stated.
   */
  rateLimits?: RateLimitSettings;
}

/** The `Retry-After` header of a 429 answer. */
export const retryAfterHeader = {
  description: "Seconds until the limit lets this caller through again (also `retryAfterSeconds` in the body)",
  schema: { type: "integer", minimum: 0 },
} as const;

/**
 * The OpenAPI 3.1 document for every route in {@link routes}, built from the
 * same zod schemas the server validates with.
 */
export function buildOpenApiDocument(info: OpenApiInfo): Record<string, unknown> {
  const refs = new Map<string, JsonSchema>();
  const paths: Record<string, Record<string, unknown>> = {};
  const errorRef = toSchema(errorBodySchema, refs);

  const all = [...Object.entries(routes), ...Object.entries(adminRoutes), ...Object.entries(streamRoutes)] as [
    string,
    RouteSpec | StreamRouteSpec,
  ][];
  for (const [name, route] of all) {
    const parameters = [
      ...Object.entries(route.params?.shape ?? {}).map(([param, schema]) => ({
        name: param,
        in: "path",
        required: true,
        schema: toSchema(schema as z.ZodType, refs),
      })),
      ...Object.entries(route.query?.shape ?? {}).map(([param, schema]) => ({
        name: param,
        in: "query",
        required: !(schema as z.ZodType).safeParse(undefined).success,
        schema: toSchema(schema as z.ZodType, refs),
      })),
    ];
    // A Set: an admin route's own `not_found` is also the one it answers when the admin API is off.
    const codes = new Set([
      ...commonErrors,
      ...(route.auth === "none" || route.auth === "server" ? [] : authErrors),
      ...(route.auth === "device" || route.auth === "device-or-access-key"
        ? [...disabledErrors, "too_many_failed_logins" as const]
        : []),
      ...(route.auth === "admin" ? adminErrors : []),
      ...(route.auth === "server" ? serverErrors : []),
      ...route.errors,
    ]);
    const byStatus = new Map<number, ErrorCode[]>();
    for (const code of codes) byStatus.set(errorStatus[code], [...(byStatus.get(errorStatus[code]) ?? []), code]);

    const responses: Record<string, unknown> = {
      [route.success.status]: route.success.schema
        ? { description: "Success", content: { "application/json": { schema: toSchema(route.success.schema, refs) } } }
        : { description: "Success, no body" },
    };
    if ("stream" in route && route.stream === "response") {
      const bytes = { "application/octet-stream": {} };
      responses[route.success.status] = { description: "The whole blob", content: bytes };
      responses[206] = {
        description: "The requested byte range (`Range: bytes=first-last`, one range)",
        content: bytes,
      };
    }
    for (const [status, statusCodes] of [...byStatus].sort((a, b) => a[0] - b[0])) {
      responses[status] = {
        description: `Error: ${statusCodes.join(", ")}`,
        ...(status === 429 && { headers: { "Retry-After": retryAfterHeader } }),
        content: { "application/json": { schema: errorRef } },
      };
    }
    const limitNames = [
      ...(route.auth === "device" || route.auth === "device-or-access-key" ? authRateLimits : []),
      ...(route.rateLimits ?? []),
    ];
    const operation: Record<string, unknown> = {
      operationId: name,
      summary: route.summary,
      parameters,
      responses,
      security: securityOf(route.auth),
    };
    if (info.rateLimits !== undefined) operation["x-rate-limit"] = rateLimitEntries(limitNames, info.rateLimits);
    if ("body" in route && route.body) {
      operation.requestBody = {
        required: true,
        description: `JSON, at most ${bodyLimitOf(route)} bytes (413 \`body_too_large\` above) and ${limits.maxJsonDepth} levels deep (400 \`too_deeply_nested\`)`,
        "x-max-body-bytes": bodyLimitOf(route),
        content: { "application/json": { schema: toSchema(route.body, refs) } },
      };
    } else if ("stream" in route && route.stream === "request") {
      operation.requestBody = {
        required: true,
        description: "Raw bytes, never parsed",
        content: { "application/octet-stream": {} },
      };
    }
    const path = openApiPath(route.path);
    paths[path] = { ...paths[path], [route.method]: operation };
  }

  return {
    openapi: "3.1.0",
    info: {
      title: `ZimChat homeserver (${info.serverName})`,
      version: info.version,
      license: { name: "AGPL-3.0-only", identifier: "AGPL-3.0-only" },
      description:
        "The REST API of a ZimChat homeserver. Real-time delivery uses Socket.IO on the same port " +
        "(events: see @zimchat/protocol `ClientToServerEvents`, `ServerToClientEvents`; sealed sends on " +
        "the `/sealed` namespace: `SealedClientToServerEvents`). Server plugins add their own routes under " +
        "`/plugins/<name>/`, documented by each plugin; a plugin's refusal is answered as 403 `refused_by_plugin`. " +
        "The Socket.IO events, their payloads and acknowledgements are described by the AsyncAPI 3.0 document at `/asyncapi.json`. " +
        "Each operation's `x-rate-limit` lists the rate limits it takes from, with this server's settings: `count` requests per " +
        "`windowSeconds` per `key`; `exceeded: refused` answers 429 with `Retry-After`, `exceeded: degraded` answers without " +
        "one-time keys instead. A method a path does not serve answers 405 `method_not_allowed` with `Allow`; an unknown path answers 404 `not_found`. " +
        "Base64 fields are standard padded base64; each states its decoded length (`x-decoded-bytes`, `minLength`/`maxLength`, `pattern`).",
    },
    paths,
    components: {
      schemas: Object.fromEntries([...refs].sort(([a], [b]) => a.localeCompare(b))),
      securitySchemes: {
        deviceBasic: {
          type: "http",
          scheme: "basic",
          description: "`uuid.deviceId` as user name, the device password",
        },
        adminBearer: {
          type: "http",
          scheme: "bearer",
          description:
            "The server's admin token (`--admin-token`, `ZIMCHAT_ADMIN_TOKEN`); without one the admin routes answer 404",
        },
        serverSignature: {
          type: "apiKey",
          in: "header",
          name: "Signature",
          description:
            "Federation: an RFC 9421 HTTP message signature (`Signature`, `Signature-Input`) by one of the origin server's Ed25519 keys " +
            "published at `/.well-known/zimchat/server`, covering `@method`, `@path`, `@query`, `content-digest` (RFC 9530, sha-256), " +
            "`x-zimchat-origin` and `x-zimchat-destination` (this server's name), with `created`, `keyid` and `alg`; valid for 300 s. " +
            "Refused with 401 `federation_unauthorized`; a server not accepted (allowlist, denylist) gets 403 `peer_not_allowed`",
        },
        unidentifiedAccessKey: {
          type: "apiKey",
          in: "header",
          name: "Unidentified-Access-Key",
          description:
            `Sealed sender: the recipient's access key, ${base64LengthText(limits.accessKeyBytes)} (${base64Length(limits.accessKeyBytes)} characters), instead of credentials. Not needed for a recipient ` +
            "with unrestricted access; a multi-recipient send without credentials carries one key per recipient in its body (`accessKeys`)",
        },
      },
    },
  };
}
