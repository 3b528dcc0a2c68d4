import { createHash, sign, verify, type KeyObject } from "node:crypto";
import { httpbis } from "http-message-signatures";
import { parseDictionary, serializeDictionary } from "structured-headers";

/**
 * Signed federation requests: RFC 9421 HTTP Message Signatures (the
 * `http-message-signatures` package), Ed25519, over the method, path,
 * query, the body's RFC 9530 `Content-Digest`, and two headers that bind
 * the request to the sending and the receiving server. A signature is
 * valid for {@link signatureMaxAgeSeconds}.
 */

/** The sending server's name. */
export const originHeader = "x-zimchat-origin";
/** The receiving server's name: a request for another server is refused. */
export const destinationHeader = "x-zimchat-destination";
/** How long a signature is accepted after it was made (and how far ahead of our clock it may be, 30 s). */
export const signatureMaxAgeSeconds = 300;
const clockToleranceSeconds = 30;
/** The components every signature covers. */
export const coveredComponents = ["@method", "@path", "@query", "content-digest", originHeader, destinationHeader];

/** RFC 9530 `Content-Digest` of a body: `sha-256=:<base64>:`. */
export function contentDigest(body: Uint8Array): string {
  return serializeDictionary({ "sha-256": createHash("sha256").update(body).digest() });
}

/** Whether a `Content-Digest` header states this body's SHA-256 (other algorithms are ignored; one must be sha-256). */
export function digestMatches(header: string | string[] | undefined, body: Uint8Array): boolean {
  if (typeof header !== "string") return false;
  if (header.length > 512) return false;
  let parsed;
  try {
    parsed = parseDictionary(header);
  } catch {
    return false;
  }
  const item = parsed.get("sha-256");
  if (!item || Array.isArray(item[0])) return false;
  const value = item[0];
  if (!(value instanceof ArrayBuffer)) return false;
  const expected = createHash("sha256").update(body).digest();
  return Buffer.from(value).equals(expected);
}

/** What a request to sign is made of. */
export interface OutgoingRequest {
  method: string;
  /** The full URL (its path and query are signed). */
  url: string;
  body: Uint8Array;
  origin: string;
  destination: string;
}

/** The headers that sign a request: origin, destination, content digest, Signature-Input and Signature. */
export async function signRequest(
  request: OutgoingRequest,
  key: { id: string; privateKey: KeyObject },
  now = Date.now(),
): Promise<Record<string, string>> {
  const headers: Record<string, string> = {
    [originHeader]: request.origin,
    [destinationHeader]: request.destination,
    "content-digest": contentDigest(request.body),
  };
  const created = new Date(Math.floor(now / 1000) * 1000);
  const signed = await httpbis.signMessage(
    {
      key: { id: key.id, alg: "ed25519", sign: async (data) => sign(null, data, key.privateKey) },
      fields: coveredComponents,
      params: ["created", "expires", "keyid", "alg"],
      paramValues: { created, expires: new Date(created.getTime() + signatureMaxAgeSeconds * 1000) },
    },
    { method: request.method.toUpperCase(), url: request.url, headers },
  );
  return Object.fromEntries(Object.entries(signed.headers).map(([name, value]) => [name.toLowerCase(), String(value)]));
}

/** Why an incoming federation request was refused (all are 401 to the caller). */
export type SignatureRefusal = "unsigned" | "wrong_destination" | "bad_digest" | "unknown_key" | "bad_signature";

/** What verification needs of an incoming request. */
export interface IncomingRequest {
  method: string;
  /** The path with its query, as received. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The raw body; null when it is read only after the signature checks (its digest is then checked by the caller). */
  body: Uint8Array | null;
}

/**
 * Verifies a signed federation request.
 * @param keyOf the origin server's unexpired public key with that id, or null
 * @returns the origin server, or why the request is refused
 */
export async function verifyRequest(
  request: IncomingRequest,
  self: string,
  keyOf: (origin: string, keyId: string) => Promise<KeyObject | null>,
  now = Date.now(),
): Promise<{ origin: string } | { refused: SignatureRefusal }> {
  const origin = single(request.headers[originHeader]);
  const destination = single(request.headers[destinationHeader]);
  if (!origin || !destination || !request.headers["signature"] || !request.headers["signature-input"]) {
    return { refused: "unsigned" };
  }
  if (destination !== self) return { refused: "wrong_destination" };
  if (request.body && !digestMatches(single(request.headers["content-digest"]), request.body)) {
    return { refused: "bad_digest" };
  }
  let unknownKey = false;
  let verified: boolean | null;
  try {
    verified = await httpbis.verifyMessage(
      {
        keyLookup: async (params) => {
          const key = typeof params.keyid === "string" ? await keyOf(origin, params.keyid) : null;
          if (!key) {
            unknownKey = true;
            return null;
          }
          return {
            id: params.keyid as string,
            algs: ["ed25519"],
            verify: async (data, sig) => verify(null, data, key, sig),
          };
        },
        requiredFields: coveredComponents,
        requiredParams: ["created", "keyid", "alg"],
        maxAge: signatureMaxAgeSeconds,
        tolerance: clockToleranceSeconds,
        notAfter: new Date(now + clockToleranceSeconds * 1000),
      },
      // The URL's host is not signed (@path and @query are): the destination header names this server.
      {
        method: request.method.toUpperCase(),
        url: new URL(request.url, "https://federation.invalid"),
        headers: flat(request.headers),
      },
    );
  } catch {
    verified = false;
  }
  if (unknownKey) return { refused: "unknown_key" };
  return verified ? { origin } : { refused: "bad_signature" };
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function flat(headers: IncomingRequest["headers"]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = value;
  return out;
}
