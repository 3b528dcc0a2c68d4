/**
 * The plaintext inside every encrypted message: a small versioned structure,
 * padded before encryption to a multiple of 160 bytes (as Signal clients do)
 * so ciphertext lengths leak only a coarse size class.
 */
import { z } from "zod";

/** Content version 1. */
export const contentSchema = z.object({
  v: z.literal(1),
  /** A text message. */
  text: z.string().max(64 * 1024).optional(),
  /** The sender's clock, ms since the epoch. */
  timestamp: z.number().int(),
  /** A delivery receipt for these message timestamps. */
  receipt: z.object({ timestamps: z.array(z.number().int()).max(100) }).optional(),
});
export type Content = z.infer<typeof contentSchema>;

const blockSize = 160;

/** Serializes and pads content: JSON, then 0x80, then zeros to a multiple of 160 bytes. */
export function encodeContent(content: Content): Uint8Array<ArrayBuffer> {
  const json = Buffer.from(JSON.stringify(content), "utf8");
  const padded = new Uint8Array(Math.ceil((json.length + 1) / blockSize) * blockSize);
  padded.set(json);
  padded[json.length] = 0x80;
  return padded;
}

/** Strips the padding and parses content. @throws when it is not valid content */
export function decodeContent(padded: Uint8Array): Content {
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (end < 0 || padded[end] !== 0x80) throw new Error("invalid padding");
  return contentSchema.parse(JSON.parse(Buffer.from(padded.subarray(0, end)).toString("utf8")));
}
