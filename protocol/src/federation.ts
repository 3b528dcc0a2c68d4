import { z } from "zod";
import { limits } from "./limits.js";
import { base64Bytes, base64LengthText } from "./primitives.js";

/**
 * Federation: how homeservers know each other. Each server publishes a
 * signed document naming itself, its federation signing keys and its
 * sealed-sender trust root; peers fetch it over TLS and cache the keys
 * until they expire.
 */

/** Where a server publishes its signed document. */
export const serverDocumentPath = "/.well-known/zimchat/server";

/** A server name: a DNS name (lowercase), optionally with a port. */
export const serverNameSchema = z
  .string()
  .max(limits.maxServerNameLength)
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$/,
    "expected a lowercase DNS name, optionally with :port",
  )
  .describe("A server name: a lowercase DNS name, optionally with :port (club.example, chat.example:8443)");

/** An Ed25519 public key, raw 32 bytes, base64. */
export const federationPublicKeySchema = base64Bytes(
  limits.ed25519PublicKeyBytes,
  limits.ed25519PublicKeyBytes,
  "an Ed25519 public key (raw)",
);

/** One federation signing key of a server. */
export const federationKeySchema = z
  .object({
    id: z
      .string()
      .regex(/^ed25519:[0-9a-f]{16}$/)
      .describe("`ed25519:` and the first 16 hex digits of the SHA-256 of the raw public key"),
    alg: z.literal("ed25519"),
    publicKey: federationPublicKeySchema,
    validUntil: z.number().int().describe("ms since the epoch: peers stop accepting signatures by this key then"),
  })
  .meta({ id: "FederationKey" });
export type FederationKey = z.infer<typeof federationKeySchema>;

/**
 * `GET /.well-known/zimchat/server`: who this server is. `signature` is the
 * Ed25519 signature of the document without `signature`, serialized as RFC
 * 8785 canonical JSON, by the key `signature.keyId` (one of `keys`).
 */
export const serverDocumentSchema = z
  .object({
    server: serverNameSchema,
    keys: z
      .array(federationKeySchema)
      .min(1)
      .max(limits.maxFederationKeys)
      .describe("The keys that sign this server's federation requests; more than one while a key rotates"),
    trustRoot: z
      .string()
      .meta({ contentEncoding: "base64" })
      .describe(
        `The sealed-sender trust root of this server's users (serialized libsignal PublicKey: ${base64LengthText(limits.ecPublicKeyBytes)}); a client checks a sender certificate of this server's user against this key only`,
      ),
    validUntil: z.number().int().describe("ms since the epoch: peers fetch the document again by then"),
    signature: z.object({
      keyId: z.string().describe("The id of the key in `keys` that signed"),
      sig: base64Bytes(limits.ed25519SignatureBytes, limits.ed25519SignatureBytes, "an Ed25519 signature"),
    }),
  })
  .meta({ id: "ServerDocument" });
export type ServerDocument = z.infer<typeof serverDocumentSchema>;
