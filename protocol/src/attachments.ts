import { z } from "zod";

/** Random bytes in an attachment id (the id is a capability: whoever knows it may download). */
export const attachmentIdBytes = 16;

/** An attachment id: 16 random bytes, unpadded base64url (22 characters). */
export const attachmentIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{22}$/, "must be 22 base64url characters")
  .meta({
    id: "AttachmentId",
    description: "16 random bytes, unpadded base64url; a capability for the encrypted blob",
  });

/** The answer to an attachment upload. */
export const uploadAttachmentResponseSchema = z
  .object({
    id: attachmentIdSchema,
    size: z.number().int().min(0).describe("Bytes stored (the uploaded ciphertext, padded by the client)"),
    expiresAt: z.number().int().describe("When the server deletes the blob, in ms since the epoch"),
  })
  .meta({ id: "UploadAttachmentResponse" });

/** The answer to an attachment upload. */
export type UploadAttachmentResponse = z.infer<typeof uploadAttachmentResponseSchema>;
