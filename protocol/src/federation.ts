import { z } from "zod";
import { limits } from "./limits.js";
import { errorBodySchema } from "./errors.js";
import { outgoingMessageSchema, sendMessagesResponseSchema } from "./messages.js";
import { base64Bytes, base64LengthText, deviceIdSchema, serverNameSchema, uuidSchema } from "./primitives.js";

/**
 * Federation: how homeservers know each other. Each server publishes a
 * document naming itself, its long-term identity key, its rotating
 * request-signing keys and its sealed-sender trust root, signed by the
 * identity key; peers fetch it over TLS (and may pin the identity key) and
 * cache the keys until they expire.
 */

/** Where a server publishes its signed document. */
export const serverDocumentPath = "/.well-known/zimchat/server";

export { serverNameSchema } from "./primitives.js";

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
 * 8785 canonical JSON, by the server's long-term `identityKey` (whose id is
 * `signature.keyId`): it certifies the rotating request-signing `keys`.
 * Peers may pin the identity key by its fingerprint, `sha256:` and the 64
 * hex digits of the SHA-256 of the raw key.
 */
export const serverDocumentSchema = z
  .object({
    server: serverNameSchema,
    identityKey: federationPublicKeySchema.describe(
      "The server's long-term identity key (Ed25519, raw 32 bytes, base64): it signs this document, so it certifies `keys`; " +
        "peers pin its fingerprint (`sha256:` and the lowercase hex SHA-256 of the raw key). It changes only when the operator replaces it",
    ),
    keys: z
      .array(federationKeySchema)
      .min(1)
      .max(limits.maxFederationKeys)
      .describe(
        "The rotating keys that sign this server's federation requests (RFC 9421), certified by the identity key's signature over this document; more than one while a key rotates",
      ),
    trustRoot: z
      .string()
      .meta({ contentEncoding: "base64" })
      .describe(
        `The sealed-sender trust root of this server's users (serialized libsignal PublicKey: ${base64LengthText(limits.ecPublicKeyBytes)}); a client checks a sender certificate of this server's user against this key only`,
      ),
    validUntil: z.number().int().describe("ms since the epoch: peers fetch the document again by then"),
    signature: z.object({
      keyId: z
        .string()
        .regex(/^ed25519:[0-9a-f]{16}$/)
        .describe(
          "The id of `identityKey`, which signed: `ed25519:` and the first 16 hex digits of the SHA-256 of the raw key",
        ),
      sig: base64Bytes(limits.ed25519SignatureBytes, limits.ed25519SignatureBytes, "an Ed25519 signature"),
    }),
  })
  .meta({ id: "ServerDocument" });
export type ServerDocument = z.infer<typeof serverDocumentSchema>;

/**
 * One send relayed from the sender's server to the recipient's: the same
 * envelopes a local `PUT /v1/messages/{uuid}` would carry, with the sending
 * account (absent for a sealed-sender send, whose access key comes instead).
 */
export const federatedSendSchema = z
  .strictObject({
    id: uuidSchema.describe(
      "Chosen by the origin server: a send with an id this server already accepted from that origin gets the first answer again and stores nothing",
    ),
    destination: uuidSchema.describe("The recipient account on this server"),
    source: z
      .strictObject({ uuid: uuidSchema, deviceId: deviceIdSchema })
      .optional()
      .describe("The sending device on the origin server; absent for a sealed-sender send"),
    accessKey: base64Bytes(limits.accessKeyBytes, limits.accessKeyBytes, "the recipient's unidentified access key")
      .optional()
      .describe("A sealed-sender send: the recipient's access key, checked by this server only"),
    messages: z.array(outgoingMessageSchema).min(1).max(limits.maxDeviceId),
  })
  .meta({ id: "FederatedSend" });
export type FederatedSend = z.infer<typeof federatedSendSchema>;

/** `PUT /federation/v1/send/{txnId}`: sends from one origin server, each accepted or refused on its own. */
export const federationTransactionSchema = z
  .strictObject({ sends: z.array(federatedSendSchema).min(1).max(limits.maxFederationTransactionSends) })
  .meta({ id: "FederationTransaction" });
export type FederationTransaction = z.infer<typeof federationTransactionSchema>;

/** What happened to one send of a transaction: `status` is what a local send would have answered. */
export const federatedSendResultSchema = z
  .object({
    id: uuidSchema,
    status: z
      .number()
      .int()
      .describe("200 when stored; otherwise the status of `error` (409, 410, 401, 404, 429, 507, ...)"),
    response: sendMessagesResponseSchema.optional().describe("With 200: the stored envelopes"),
    error: errorBodySchema.optional().describe("Otherwise: the refusal, as a local send gets it"),
  })
  .meta({ id: "FederatedSendResult" });
export type FederatedSendResult = z.infer<typeof federatedSendResultSchema>;

/** The answer to a transaction: one result per send, in order. Replaying a transaction replays its answers. */
export const federationTransactionResponseSchema = z
  .object({ results: z.array(federatedSendResultSchema) })
  .meta({ id: "FederationTransactionResponse" });
export type FederationTransactionResponse = z.infer<typeof federationTransactionResponseSchema>;

/**
 * The answer to `PUT /v1/federation/{server}/messages/{uuid}`. `queued:
 * false`: the recipient's server stored the envelopes (`serverTimestamp`,
 * `envelopes` as for a local send). `queued: true`: that server did not
 * answer in time; the envelopes wait in this server's outbox and are
 * retried, and a later refusal reaches the sending device as a
 * `remote-delivery-failed` event naming `id`.
 */
export const remoteSendResponseSchema = z
  .object({
    id: uuidSchema.describe("This send's id, as named by a later `remote-delivery-failed` event"),
    queued: z.boolean(),
    serverTimestamp: z.number().int().optional(),
    envelopes: z.array(z.object({ deviceId: deviceIdSchema, id: uuidSchema })).optional(),
  })
  .meta({ id: "RemoteSendResponse" });
export type RemoteSendResponse = z.infer<typeof remoteSendResponseSchema>;

/** Why a queued send to another server was given up. */
export const remoteDeliveryFailureSchema = z
  .enum(["mismatched_devices", "stale_devices", "not_found", "unauthorized", "refused", "expired"])
  .describe(
    "mismatched_devices / stale_devices: the recipient's devices changed (fetch keys again and re-encrypt); not_found: no such account; " +
      "unauthorized: a wrong access key; refused: any other refusal (plugin, full mailbox, invalid content); expired: the other server " +
      "did not answer within the envelope lifetime",
  );
export type RemoteDeliveryFailure = z.infer<typeof remoteDeliveryFailureSchema>;

/** The `remote-delivery-failed` socket event: a queued send to another server that will not be delivered. */
export const remoteDeliveryFailedSchema = z
  .object({
    id: uuidSchema.describe("The send's id, from its `RemoteSendResponse`"),
    server: serverNameSchema,
    destination: uuidSchema,
    reason: remoteDeliveryFailureSchema,
    missingDevices: z.array(deviceIdSchema).optional(),
    extraDevices: z.array(deviceIdSchema).optional(),
    staleDevices: z.array(deviceIdSchema).optional(),
  })
  .meta({ id: "RemoteDeliveryFailed" });
export type RemoteDeliveryFailed = z.infer<typeof remoteDeliveryFailedSchema>;
