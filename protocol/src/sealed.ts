import { z } from "zod";
import { limits } from "./limits.js";
import { idempotencyKeySchema, socketSendRequestSchema } from "./messages.js";
import { base64Bytes, base64LengthText, deviceIdSchema, serverNameSchema, uuidSchema } from "./primitives.js";

/** A 16-byte unidentified access key, base64. */
export const accessKeySchema = base64Bytes(limits.accessKeyBytes, limits.accessKeyBytes, "an unidentified access key");

/**
 * The header that carries an unidentified access key on an unauthenticated
 * (sealed-sender) send, base64.
 */
export const accessKeyHeader = "unidentified-access-key";

/** `GET /v1/certificate/trust-root`: the key clients pin to check sender certificates. */
export const trustRootResponseSchema = z
  .object({
    publicKey: z
      .string()
      .meta({ contentEncoding: "base64" })
      .describe(`Serialized libsignal PublicKey: ${base64LengthText(limits.ecPublicKeyBytes)}`),
    fingerprint: z.string().describe("SHA-256 of the serialized key, hex in groups of four: publish it out of band"),
  })
  .meta({ id: "TrustRootResponse" });
export type TrustRootResponse = z.infer<typeof trustRootResponseSchema>;

/** `GET /v1/certificate/delivery`: a sender certificate for the authenticated device. */
export const senderCertificateResponseSchema = z
  .object({
    certificate: z.string().meta({ contentEncoding: "base64" }).describe("Serialized libsignal SenderCertificate"),
    expiresAt: z.number().int().describe("ms since the epoch"),
  })
  .meta({ id: "SenderCertificateResponse" });
export type SenderCertificateResponse = z.infer<typeof senderCertificateResponseSchema>;

/** `PUT /v1/accounts/attributes`: the account's access key and whether it accepts sealed messages from anyone. */
export const accountAttributesRequestSchema = z
  .strictObject({ accessKey: accessKeySchema, unrestrictedAccess: z.boolean() })
  .meta({ id: "AccountAttributesRequest" });
export type AccountAttributesRequest = z.infer<typeof accountAttributesRequestSchema>;

/** One recipient's access key in a multi-recipient send. */
export const recipientAccessKeySchema = z.strictObject({ uuid: uuidSchema, accessKey: accessKeySchema });

/**
 * `PUT /v1/messages/multi-recipient` and the sealed socket's `send-multi`:
 * one libsignal `SealedSenderMultiRecipientMessage`, fanned out by the
 * server to every recipient device it names. Unauthenticated sends carry
 * every recipient's access key.
 */
export const multiRecipientRequestSchema = z
  .strictObject({
    message: base64Bytes(1, limits.maxMultiRecipientBytes, "a libsignal SealedSenderMultiRecipientMessage"),
    accessKeys: z.array(recipientAccessKeySchema).max(limits.maxGroupRecipients).optional(),
    remoteRecipients: z
      .array(z.strictObject({ uuid: uuidSchema, server: serverNameSchema }))
      .max(limits.maxGroupRecipients)
      .optional()
      .describe(
        "Federation: the recipients of `message` whose accounts are on other servers, and which. Each gets only its own " +
          "sealed message, relayed to its server (answered in `remote`); the rest are this server's accounts",
      ),
    idempotencyKey: idempotencyKeySchema.optional(),
  })
  .meta({ id: "MultiRecipientRequest" });
export type MultiRecipientRequest = z.infer<typeof multiRecipientRequestSchema>;

/** The answer to an accepted multi-recipient send. */
export const multiRecipientResponseSchema = z
  .object({
    serverTimestamp: z.number().int(),
    recipients: z.array(
      z.object({ uuid: uuidSchema, envelopes: z.array(z.object({ deviceId: deviceIdSchema, id: uuidSchema })) }),
    ),
    remote: z
      .array(
        z.object({
          uuid: uuidSchema,
          server: z.string(),
          status: z
            .number()
            .int()
            .describe("200: stored there (or `queued`); otherwise the refusal's status, as for a single send"),
          id: uuidSchema.optional().describe("The relayed send's id (named by a later `remote-delivery-failed`)"),
          queued: z.boolean().optional(),
          envelopes: z.array(z.object({ deviceId: deviceIdSchema, id: uuidSchema })).optional(),
          error: z
            .object({ code: z.string(), message: z.string() })
            .loose()
            .optional()
            .describe(
              "The other server's refusal (409 `mismatched_devices`, 410 `stale_devices`, ...): re-send to this recipient only",
            ),
        }),
      )
      .optional()
      .describe(
        "Federation: one result per recipient in `remoteRecipients`. The local recipients were committed together; each " +
          "remote one was relayed on its own, so some may be refused while the others are stored",
      ),
  })
  .meta({ id: "MultiRecipientResponse" });
export type MultiRecipientResponse = z.infer<typeof multiRecipientResponseSchema>;

/** Per-recipient device mismatches of a refused multi-recipient send (409 / 410 bodies). */
export const recipientMismatchSchema = z.object({
  uuid: uuidSchema,
  missingDevices: z.array(z.number().int()).optional(),
  extraDevices: z.array(z.number().int()).optional(),
  staleDevices: z.array(z.number().int()).optional(),
});
export type RecipientMismatch = z.infer<typeof recipientMismatchSchema>;

/**
 * The sealed socket's `send` event (namespace `/sealed`, no credentials):
 * the same body as the authenticated `send`, plus the recipient's access key
 * (omitted only for a recipient that accepts sealed messages from anyone).
 */
export const sealedSocketSendRequestSchema = socketSendRequestSchema
  .extend({ accessKey: accessKeySchema.optional() })
  .meta({ id: "SealedSocketSendRequest" });
export type SealedSocketSendRequest = z.infer<typeof sealedSocketSendRequestSchema>;
