import { z } from "zod";
import { limits } from "./limits.js";
import { base64Bytes, deviceIdSchema, registrationIdSchema, uuidSchema } from "./primitives.js";

/**
 * Envelope types, by name: libsignal's CiphertextMessageType values for
 * `whisper` and `prekey`, and 6 for `sealed` (a sealed-sender message, whose
 * sender only the recipient learns). The server checks that the content
 * parses as that kind of libsignal message, so no route accepts plaintext.
 */
export const envelopeTypes = { whisper: 2, prekey: 3, sealed: 6 } as const;
export type EnvelopeType = keyof typeof envelopeTypes;
export const envelopeTypeSchema = z.enum(Object.keys(envelopeTypes) as [EnvelopeType, ...EnvelopeType[]]);

/** The name of a stored envelope type number. */
export function envelopeTypeName(value: number): EnvelopeType | undefined {
  return (Object.keys(envelopeTypes) as EnvelopeType[]).find((k) => envelopeTypes[k] === value);
}

/**
 * One ciphertext for one destination device. Content above
 * `limits.maxContentBytes` is refused with 413 `content_too_large` by the
 * server; the schema bounds the string only by the body limit, so that
 * oversize content gets that code rather than a generic 400.
 */
export const outgoingMessageSchema = z
  .strictObject({
    type: envelopeTypeSchema,
    destinationDeviceId: deviceIdSchema,
    destinationRegistrationId: registrationIdSchema,
    content: base64Bytes(
      1,
      limits.maxBodyBytes,
      `the libsignal message of the stated type; over ${limits.maxContentBytes} bytes is refused with 413 content_too_large`,
    ),
  })
  .meta({ id: "OutgoingMessage" });
export type OutgoingMessage = z.infer<typeof outgoingMessageSchema>;

/**
 * A client-chosen key that makes a send safe to retry (like Matrix's
 * `txnId`, Stripe's `Idempotency-Key`): 16 to 64 base64url characters, in
 * practice 16 random bytes (22 characters). The server remembers each key
 * for the envelope lifetime with its first answer; a retry with the same key
 * gets that answer again and stores nothing new. Keys are scoped: per sending
 * device, or (sealed, no credentials) per destination, so one client's keys
 * never meet another's. Optional: a send without a key is never de-duplicated.
 */
export const idempotencyKeySchema = z
  .string()
  .regex(
    new RegExp(`^[A-Za-z0-9_-]{${limits.minIdempotencyKeyChars},${limits.maxIdempotencyKeyChars}}$`),
    "16 to 64 base64url characters",
  )
  .describe("Retry a send with the same key to get its first answer instead of a second copy");

/**
 * `PUT /v1/messages/{uuid}` and the socket's `send` event: one envelope per
 * current device of the recipient (for a send to oneself: every device but
 * the sender's), all committed before the answer.
 */
export const sendMessagesRequestSchema = z
  .strictObject({
    messages: z.array(outgoingMessageSchema).min(1).max(limits.maxDeviceId),
    idempotencyKey: idempotencyKeySchema.optional(),
  })
  .meta({ id: "SendMessagesRequest" });
export type SendMessagesRequest = z.infer<typeof sendMessagesRequestSchema>;

/** The socket's `send` event carries the destination in its body. */
export const socketSendRequestSchema = sendMessagesRequestSchema
  .extend({ destination: uuidSchema })
  .meta({ id: "SocketSendRequest" });
export type SocketSendRequest = z.infer<typeof socketSendRequestSchema>;

/** The answer to an accepted send. */
export const sendMessagesResponseSchema = z
  .object({
    serverTimestamp: z.number().int(),
    envelopes: z.array(z.object({ deviceId: deviceIdSchema, id: uuidSchema })),
  })
  .meta({ id: "SendMessagesResponse" });
export type SendMessagesResponse = z.infer<typeof sendMessagesResponseSchema>;

/** An envelope as delivered to its destination device. */
export const envelopeSchema = z
  .object({
    id: uuidSchema.describe("Assigned by the server; acknowledge it to delete the envelope"),
    type: envelopeTypeSchema,
    sourceUuid: uuidSchema.optional(),
    sourceDeviceId: deviceIdSchema.optional(),
    sourceServer: z
      .string()
      .max(limits.maxServerNameLength)
      .optional()
      .describe(
        "Set when the envelope came from another homeserver (federation): that server's name. The sender, if named, is `sourceUuid` on that server",
      ),
    serverTimestamp: z.number().int(),
    content: z.string().meta({ contentEncoding: "base64" }),
  })
  .meta({ id: "Envelope" });
export type Envelope = z.infer<typeof envelopeSchema>;

/** `GET /v1/messages`: the oldest queued envelopes of the authenticated device. */
export const fetchMessagesResponseSchema = z
  .object({ envelopes: z.array(envelopeSchema), more: z.boolean() })
  .meta({ id: "FetchMessagesResponse" });
export type FetchMessagesResponse = z.infer<typeof fetchMessagesResponseSchema>;

/**
 * `POST /v1/messages/ack` and the socket's `ack` event: delete delivered
 * envelopes. Ids already deleted are ignored (acks are idempotent), and so
 * are ids queued for another device: answered exactly as deleted ones, so an
 * ack reveals nothing about another device's queue.
 */
export const ackRequestSchema = z
  .strictObject({ ids: z.array(uuidSchema).min(1).max(limits.maxAckIds) })
  .meta({ id: "AckRequest" });
export type AckRequest = z.infer<typeof ackRequestSchema>;

/** The answer to an acknowledgement. */
export const ackResponseSchema = z
  .object({ deleted: z.number().int().describe("How many of the caller's own envelopes were deleted") })
  .meta({ id: "AckResponse" });
export type AckResponse = z.infer<typeof ackResponseSchema>;
