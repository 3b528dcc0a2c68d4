import { z } from "zod";
import { limits, usernamePattern } from "./limits.js";

const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Whether `s` is canonical padded base64. A regular expression costs tens to
 * hundreds of ms on a megabyte string (a multi-recipient body); decoding and
 * re-encoding costs a few, and a non-canonical string never round-trips.
 */
export function isCanonicalBase64(s: string): boolean {
  if (s.length % 4 !== 0) return false;
  return s.length <= 1024 ? base64Pattern.test(s) : Buffer.from(s, "base64").toString("base64") === s;
}

/** Decoded length of a canonical base64 string (padding included). */
export function base64DecodedLength(s: string): number {
  const padding = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  return (s.length / 4) * 3 - padding;
}

/** Characters of canonical padded base64 for `bytes` bytes. */
export function base64Length(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * A regular expression for canonical padded base64 of exactly `bytes` bytes:
 * the length, the alphabet, the padding and (for a partial last group) a
 * last character whose unused bits are zero; with `firstByte`, the first
 * byte too (a libsignal key's type byte). Every string it matches passes
 * {@link base64Bytes}.
 */
export function exactBase64Pattern(bytes: number, firstByte?: number): string {
  const full = Math.floor(bytes / 3);
  const tail = ["", "[A-Za-z0-9+/][AQgw]==", "[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]="][bytes % 3];
  if (firstByte === undefined || full < 1) return `^(?:[A-Za-z0-9+/]{4}){${full}}${tail}$`;
  // The first character holds the byte's top six bits, the second its low two bits and four free ones.
  const second = (firstByte & 3) << 4;
  const head = `${base64Alphabet[firstByte >> 2]}[${base64Alphabet[second]}-${base64Alphabet[second + 15]}][A-Za-z0-9+/]{2}`;
  return `^${head}(?:[A-Za-z0-9+/]{4}){${full - 1}}${tail}$`;
}

/** The length statement every base64 field's description carries (see {@link base64Bytes}). */
export function base64LengthText(min: number, max: number = min): string {
  const size = min === max ? `exactly ${min} bytes` : `${min} to ${max} bytes`;
  return `base64 (standard alphabet, padded with =) of ${size}`;
}

/**
 * Standard padded base64 that decodes to `min`..`max` bytes. The string
 * length is checked before the pattern, so oversize input is refused cheaply.
 * The JSON Schema says so for generators and client authors:
 * `contentEncoding: base64`, `minLength`/`maxLength` of the text, a
 * `pattern` (exact for a fixed size), `x-decoded-bytes: {min, max}` and a
 * description that states the decoded length, followed by `what`. A
 * `firstByte` (a key's type byte) is stated in the pattern only: a wrong one
 * passes this schema and is refused by the server's key parsing
 * (400 `invalid_key`), as before.
 */
export function base64Bytes(min: number, max: number = min, what?: string, firstByte?: number): z.ZodString {
  return z
    .string()
    .max(base64Length(max))
    .min(base64Length(min))
    .refine(isCanonicalBase64, "must be standard padded base64")
    .refine(
      (s) => {
        const n = base64DecodedLength(s);
        return n >= min && n <= max;
      },
      min === max ? `must decode to ${min} bytes` : `must decode to ${min}..${max} bytes`,
    )
    .meta({
      contentEncoding: "base64",
      pattern: min === max ? exactBase64Pattern(min, firstByte) : base64Pattern.source,
      "x-decoded-bytes": { min, max },
      description: what ? `${base64LengthText(min, max)} (${what})` : base64LengthText(min, max),
    });
}

/** An account id: a lowercase RFC 4122 UUID (the libsignal address name). */
export const uuidSchema = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, "must be a lowercase UUID");

/** A device id within an account, 1..127. */
export const deviceIdSchema = z.number().int().min(1).max(limits.maxDeviceId);

/** A device id as it appears in a URL path: decimal digits only, 1..127. */
export const deviceIdParamSchema = z
  .string()
  .regex(/^[1-9][0-9]{0,2}$/, "must be a decimal device id")
  .transform(Number)
  .pipe(deviceIdSchema);

/** A libsignal registration id, 1..16380. */
export const registrationIdSchema = z.number().int().min(limits.minRegistrationId).max(limits.maxRegistrationId);

/** A pre-key id, 0..2^31-1. */
export const keyIdSchema = z.number().int().min(0).max(limits.maxKeyId);

/** A username: `[a-z0-9_.]{3,32}`. */
export const usernameSchema = z.string().regex(usernamePattern, "must match [a-z0-9_.]{3,32}");

/** A serialized libsignal EC public key. */
export const ecPublicKeySchema = base64Bytes(
  limits.ecPublicKeyBytes,
  limits.ecPublicKeyBytes,
  "a serialized libsignal Curve25519 public key: the 0x05 type byte and 32 bytes",
  0x05,
);

/** A serialized libsignal Kyber-1024 public key. */
export const kyberPublicKeySchema = base64Bytes(
  limits.kyberPublicKeyBytes,
  limits.kyberPublicKeyBytes,
  "a serialized libsignal Kyber-1024 public key: the 0x08 type byte and 1568 bytes",
  0x08,
);

/** An XEdDSA signature by the account's identity key. */
export const signatureSchema = base64Bytes(limits.signatureBytes, limits.signatureBytes, "an XEdDSA signature");

/** A device password: base64 or base64url text of at least 24 random bytes (32 characters, as the SDK makes). */
export const passwordSchema = z
  .string()
  .min(limits.minPasswordLength)
  .max(limits.maxPasswordLength)
  .regex(/^[A-Za-z0-9+/=_-]+$/, "must be base64 or base64url text");

/** A server name: a DNS name (lowercase), optionally with a port. */
export const serverNameSchema = z
  .string()
  .max(limits.maxServerNameLength)
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$/,
    "expected a lowercase DNS name, optionally with :port",
  )
  .describe("A server name: a lowercase DNS name, optionally with :port (club.example, chat.example:8443)");
