/**
 * Encrypted attachments. The file is encrypted on this device with a fresh
 * AES-256-GCM key, after padding it to a size bucket; the server stores only
 * that ciphertext, under a random id. What it takes to fetch and open it
 * (the {@link AttachmentPointer}: id, key, digest, true size) travels inside
 * an end-to-end encrypted message.
 *
 * The uploaded blob is `IV (12 bytes) || AES-256-GCM(padded plaintext) || tag (16 bytes)`,
 * and the digest is SHA-256 over that whole blob. On download the digest is
 * checked first and the GCM tag second; no plaintext is returned or written
 * to its destination unless both pass.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { z } from "zod";
import {
  attachmentIdSchema,
  base64Bytes,
  serverNameSchema,
  uploadAttachmentResponseSchema,
  type ErrorBody,
} from "@zimchat/protocol";
import { ApiError } from "./errors.js";
import type { DeviceCredentials } from "./http-api.js";

const keyBytes = 32;
const ivBytes = 12;
const tagBytes = 16;
const digestBytes = 32;
/** Bytes the blob adds to the padded plaintext: the IV and the GCM tag. */
export const attachmentOverheadBytes = ivBytes + tagBytes;

/**
 * Where an encrypted attachment is and how to open it. Sent only inside
 * end-to-end encrypted content, never to the server in the clear.
 */
export const attachmentPointerSchema = z.object({
  /** The server's id of the uploaded blob. */
  id: attachmentIdSchema,
  /** AES-256 key, base64. */
  key: base64Bytes(keyBytes),
  /** SHA-256 of the uploaded blob, base64; checked before decrypting. */
  digest: base64Bytes(digestBytes),
  /** The true plaintext size in bytes (the blob is padded to a size bucket). */
  size: z
    .number()
    .int()
    .min(0)
    .max(2 ** 40),
  contentType: z.string().max(128).optional(),
  fileName: z.string().max(255).optional(),
});

/** Where an encrypted attachment is and how to open it (see {@link attachmentPointerSchema}). */
export type AttachmentPointer = z.infer<typeof attachmentPointerSchema>;

/**
 * A pointer as a receiving device keeps it: `server` is the other
 * homeserver its blob is stored on, absent for this device's own. It is
 * never part of the message: the receiving device records the sender's
 * server (the blob is where its sender uploaded it; in a group too), so a
 * pointer without it (sent by this account, from this homeserver's users,
 * or kept before this field existed) is fetched from this homeserver.
 */
export type StoredAttachmentPointer = AttachmentPointer & {
  /** The other homeserver that stores the blob (federation); absent: this device's homeserver. */
  server?: string;
};

const storedAttachmentPointerSchema = attachmentPointerSchema.extend({ server: serverNameSchema.optional() });

/** Why an attachment could not be used. */
export enum AttachmentFailureReason {
  /** The pointer does not parse (wrong id, key or digest encoding, size out of range). */
  InvalidPointer = "invalid_pointer",
  /** The blob is not as long as the pointer's size implies (truncated, or extended). */
  SizeMismatch = "size_mismatch",
  /** The blob's SHA-256 is not the pointer's digest: it was altered or swapped. Checked before any decryption. */
  DigestMismatch = "digest_mismatch",
  /** AES-GCM authentication failed (wrong key, or altered bytes that also match the digest). */
  DecryptionFailed = "decryption_failed",
  /** The file or stream being encrypted changed size while it was read. */
  InputChanged = "input_changed",
}

/** An attachment that could not be encrypted, fetched or opened; nothing was released. */
export class AttachmentError extends Error {
  override name = "AttachmentError";

  constructor(
    readonly reason: AttachmentFailureReason,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * The padded size of a plaintext of `size` bytes: the next step of a 5%
 * geometric series, at least 541 bytes (Signal's attachment buckets). The
 * server learns the bucket, not the size.
 */
export function paddedSize(size: number): number {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError("size must be a non-negative integer");
  if (size <= 1) return 541;
  return Math.max(541, size, Math.floor(1.05 ** Math.ceil(Math.log(size) / Math.log(1.05))));
}

/** Bytes of the uploaded blob for a plaintext of `size` bytes. */
export function blobSize(size: number): number {
  return paddedSize(size) + attachmentOverheadBytes;
}

/** A plaintext to encrypt: bytes, a stream, or a file path. */
export type AttachmentInput = Uint8Array | Readable | string;

/** What the encryptor knows once the whole ciphertext has been read. */
export interface EncryptionResult {
  /** SHA-256 of the blob. */
  digest: Buffer;
  /** True plaintext bytes. */
  size: number;
  /** Blob bytes. */
  uploadSize: number;
}

/** A streaming encryption in progress (see {@link encryptAttachment}). */
export interface AttachmentEncryption {
  /** The blob to upload: IV, AES-256-GCM over the padded plaintext, tag. Read it once. */
  ciphertext: Readable;
  /** The fresh AES-256 key. */
  key: Buffer;
  /** Bytes of `ciphertext` when the plaintext size is known up front (bytes or a file), else undefined (a stream). */
  uploadSize: number | undefined;
  /** Settles once `ciphertext` has been read to its end. */
  done: Promise<EncryptionResult>;
}

/**
 * Encrypts a plaintext for upload with a fresh random key and IV, padding
 * it to its size bucket. A stream or a file is encrypted as it is read, never
 * held whole in memory.
 * @example
 * const enc = await encryptAttachment("/tmp/photo.jpg");
 * await pipeline(enc.ciphertext, someUpload);
 * const { digest, size } = await enc.done;
 */
export async function encryptAttachment(input: AttachmentInput): Promise<AttachmentEncryption> {
  let source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  let expectedSize: number | undefined;
  if (typeof input === "string") {
    expectedSize = (await stat(input)).size;
    source = createReadStream(input);
  } else if (input instanceof Uint8Array) {
    expectedSize = input.length;
    source = [input];
  } else {
    source = input;
  }
  const key = randomBytes(keyBytes);
  const iv = randomBytes(ivBytes);
  let settle!: { resolve: (r: EncryptionResult) => void; reject: (e: unknown) => void };
  const done = new Promise<EncryptionResult>((resolve, reject) => (settle = { resolve, reject }));
  // Whoever never reads the ciphertext has no use for the result either.
  done.catch(() => undefined);

  async function* blob(): AsyncGenerator<Buffer> {
    const hash = createHash("sha256");
    let uploadSize = 0;
    const out = (bytes: Buffer): Buffer => {
      hash.update(bytes);
      uploadSize += bytes.length;
      return bytes;
    };
    try {
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      yield out(iv);
      let size = 0;
      for await (const chunk of source) {
        size += chunk.length;
        if (expectedSize !== undefined && size > expectedSize) throw inputChanged();
        const encrypted = cipher.update(chunk);
        if (encrypted.length) yield out(encrypted);
      }
      if (expectedSize !== undefined && size !== expectedSize) throw inputChanged();
      const zeros = Buffer.alloc(64 * 1024);
      for (let left = paddedSize(size) - size; left > 0; left -= zeros.length) {
        yield out(cipher.update(zeros.subarray(0, Math.min(left, zeros.length))));
      }
      const last = cipher.final();
      if (last.length) yield out(last);
      yield out(cipher.getAuthTag());
      settle.resolve({ digest: hash.digest(), size, uploadSize });
    } catch (error) {
      settle.reject(error);
      throw error;
    }
  }
  return {
    ciphertext: Readable.from(blob(), { objectMode: false }),
    key,
    uploadSize: expectedSize === undefined ? undefined : blobSize(expectedSize),
    done,
  };
}

/** Encrypts bytes in memory (small attachments, tests): the blob and what its pointer needs. */
export async function encryptAttachmentBytes(
  plaintext: Uint8Array,
): Promise<{ blob: Buffer; key: Buffer; digest: Buffer; size: number }> {
  const encryption = await encryptAttachment(plaintext);
  const chunks: Buffer[] = [];
  for await (const chunk of encryption.ciphertext) chunks.push(chunk as Buffer);
  const { digest, size } = await encryption.done;
  return { blob: Buffer.concat(chunks), key: encryption.key, digest, size };
}

/**
 * Checks a blob against its pointer (length, then digest, then GCM tag) and
 * returns the plaintext without its padding.
 * @throws AttachmentError with the reason; no plaintext is returned then
 */
export function decryptAttachmentBytes(blob: Uint8Array, pointer: AttachmentPointer): Buffer {
  const p = parsePointer(pointer);
  if (blob.length !== blobSize(p.size)) throw sizeMismatch(blob.length, p.size);
  checkDigest(createHash("sha256").update(blob).digest(), p.digest);
  const bytes = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const decipher = createDecipheriv("aes-256-gcm", Buffer.from(p.key, "base64"), bytes.subarray(0, ivBytes));
  decipher.setAuthTag(bytes.subarray(bytes.length - tagBytes));
  const padded = decipher.update(bytes.subarray(ivBytes, bytes.length - tagBytes));
  try {
    decipher.final();
  } catch (error) {
    throw new AttachmentError(AttachmentFailureReason.DecryptionFailed, "the attachment failed authentication", {
      cause: error,
    });
  }
  return padded.subarray(0, p.size);
}

/** Optional metadata carried in the pointer (inside the encrypted message only). */
export interface UploadOptions {
  contentType?: string;
  fileName?: string;
}

/**
 * Encrypts and uploads an attachment, streaming (a file or stream is never
 * held whole in memory), and returns the pointer to send inside an
 * end-to-end encrypted message.
 * @throws ApiError when the server refuses (`body_too_large`, `quota_exceeded`, `unauthorized`, ...)
 * @example
 * const pointer = await uploadAttachment(url, credentials, "/tmp/photo.jpg", { contentType: "image/jpeg" });
 */
export async function uploadAttachment(
  serverUrl: string,
  credentials: DeviceCredentials,
  input: AttachmentInput,
  options: UploadOptions = {},
): Promise<AttachmentPointer> {
  const encryption = await encryptAttachment(input);
  const headers: OutgoingHttpHeaders = {
    authorization: basicAuth(credentials),
    "content-type": "application/octet-stream",
    accept: "application/json",
  };
  if (encryption.uploadSize !== undefined) headers["content-length"] = encryption.uploadSize;
  const res = await send("POST", new URL("/v1/attachments", serverUrl), headers, encryption.ciphertext);
  const text = (await readAll(res, 64 * 1024)).toString("utf8");
  if (res.statusCode !== 201) throw apiError(res, text);
  const { digest, size } = await encryption.done;
  const { id } = uploadAttachmentResponseSchema.parse(JSON.parse(text));
  return {
    id,
    key: encryption.key.toString("base64"),
    digest: digest.toString("base64"),
    size,
    ...(options.contentType !== undefined && { contentType: options.contentType }),
    ...(options.fileName !== undefined && { fileName: options.fileName }),
  };
}

/**
 * Downloads an attachment, checks its length and digest, then decrypts it
 * and strips the padding. It is fetched from `serverUrl` (this device's
 * homeserver): with `GET /v1/attachments/{id}`, or, when the pointer names
 * another `server` (see {@link StoredAttachmentPointer}), through it with
 * `GET /v1/federation/{server}/attachments/{id}`; the checks are the same.
 * Without `destination` the plaintext is returned; with it, the blob
 * streams through a temporary file next to `destination` and the plaintext
 * is renamed into place only once the digest and the GCM tag have both been
 * checked (nothing is left behind otherwise).
 * @throws AttachmentError (`digest_mismatch`, `decryption_failed`, `size_mismatch`, `invalid_pointer`)
 * @throws ApiError when the server refuses (`not_found` once the attachment expired; for another server's,
 * also `peer_unavailable`, `peer_not_allowed`, `body_too_large`, `rate_limited`)
 */
export async function downloadAttachment(
  serverUrl: string,
  credentials: DeviceCredentials,
  pointer: StoredAttachmentPointer,
): Promise<Buffer>;
export async function downloadAttachment(
  serverUrl: string,
  credentials: DeviceCredentials,
  pointer: StoredAttachmentPointer,
  destination: string,
): Promise<void>;
export async function downloadAttachment(
  serverUrl: string,
  credentials: DeviceCredentials,
  pointer: StoredAttachmentPointer,
  destination?: string,
): Promise<Buffer | void> {
  const p = parsePointer(pointer);
  const expected = blobSize(p.size);
  const path =
    p.server === undefined
      ? `/v1/attachments/${p.id}`
      : `/v1/federation/${encodeURIComponent(p.server)}/attachments/${p.id}`;
  const res = await send("GET", new URL(path, serverUrl), {
    authorization: basicAuth(credentials),
    accept: "application/octet-stream",
  });
  if (res.statusCode !== 200) throw apiError(res, (await readAll(res, 64 * 1024)).toString("utf8"));
  if (destination === undefined) {
    const blob = await readAll(res, expected, () => sizeMismatch(expected + 1, p.size));
    return decryptAttachmentBytes(blob, p);
  }

  const suffix = randomBytes(6).toString("hex");
  const blobPath = `${destination}.${suffix}.blob`;
  const plainPath = `${destination}.${suffix}.part`;
  try {
    // 1. The blob to a temporary file, hashed and counted on the way.
    const hash = createHash("sha256");
    let received = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        received += chunk.length;
        if (received > expected) return callback(sizeMismatch(received, p.size));
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    await pipeline(res, counter, createWriteStream(blobPath, { flags: "wx", mode: 0o600 }));
    if (received !== expected) throw sizeMismatch(received, p.size);
    // 2. The digest, before any decryption.
    checkDigest(hash.digest(), p.digest);
    // 3. Decrypt to a second temporary file, keeping only the true size; the tag is checked at the end.
    const iv = Buffer.alloc(ivBytes);
    const tag = Buffer.alloc(tagBytes);
    const file = await open(blobPath, "r");
    try {
      await file.read(iv, 0, ivBytes, 0);
      await file.read(tag, 0, tagBytes, expected - tagBytes);
    } finally {
      await file.close();
    }
    const decipher = createDecipheriv("aes-256-gcm", Buffer.from(p.key, "base64"), iv);
    decipher.setAuthTag(tag);
    let written = 0;
    const unpad = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        const keep = Math.max(0, Math.min(chunk.length, p.size - written));
        written += keep;
        callback(null, keep ? chunk.subarray(0, keep) : undefined);
      },
    });
    try {
      await pipeline(
        createReadStream(blobPath, { start: ivBytes, end: expected - tagBytes - 1 }),
        decipher,
        unpad,
        createWriteStream(plainPath, { flags: "wx", mode: 0o600 }),
      );
    } catch (error) {
      if (
        (error as { code?: string }).code === "ERR_CRYPTO_INVALID_STATE" ||
        /authenticate/i.test(String((error as Error).message))
      ) {
        throw new AttachmentError(AttachmentFailureReason.DecryptionFailed, "the attachment failed authentication", {
          cause: error,
        });
      }
      throw error;
    }
    await rename(plainPath, destination);
  } finally {
    await rm(blobPath, { force: true });
    await rm(plainPath, { force: true });
  }
}

function parsePointer(pointer: StoredAttachmentPointer): StoredAttachmentPointer {
  const parsed = storedAttachmentPointerSchema.safeParse(pointer);
  if (!parsed.success)
    throw new AttachmentError(AttachmentFailureReason.InvalidPointer, "the attachment pointer is invalid", {
      cause: parsed.error,
    });
  return parsed.data;
}

function checkDigest(actual: Buffer, expected: string): void {
  if (!timingSafeEqual(actual, Buffer.from(expected, "base64"))) {
    throw new AttachmentError(
      AttachmentFailureReason.DigestMismatch,
      "the attachment's digest does not match its pointer",
    );
  }
}

function sizeMismatch(received: number, size: number): AttachmentError {
  return new AttachmentError(
    AttachmentFailureReason.SizeMismatch,
    `the attachment is ${received} bytes, not the ${blobSize(size)} its pointer implies`,
  );
}

function inputChanged(): AttachmentError {
  return new AttachmentError(
    AttachmentFailureReason.InputChanged,
    "the attachment's file changed size while it was encrypted",
  );
}

function basicAuth({ uuid, deviceId, password }: DeviceCredentials): string {
  return `Basic ${Buffer.from(`${uuid}.${deviceId}:${password}`).toString("base64")}`;
}

function apiError(res: IncomingMessage, text: string): ApiError {
  let body: ErrorBody;
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    body = { code: "internal", message: `HTTP ${res.statusCode}` };
  }
  const retryAfter = res.headers["retry-after"];
  return new ApiError(res.statusCode ?? 0, body, retryAfter ? Number(retryAfter) : undefined);
}

/**
 * One HTTP request whose body streams from `body`. The answer wins over a
 * failed write: a server that refuses an upload answers and closes without
 * reading the rest.
 */
function send(method: string, url: URL, headers: OutgoingHttpHeaders, body?: Readable): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, { method, headers });
    req.once("response", resolve);
    req.once("error", reject);
    if (!body) return void req.end();
    body.once("error", (error) => {
      req.destroy(error);
      reject(error);
    });
    // A refusal closes the connection early: stop reading the source (and release its file).
    req.once("close", () => {
      if (!body.readableEnded) body.destroy();
    });
    body.pipe(req);
  });
}

/** Reads a response body up to `max` bytes; more is `tooLong()` (default: the stream is cut off). */
async function readAll(res: IncomingMessage, max: number, tooLong?: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      length += chunk.length;
      if (length > max) return callback(tooLong?.() ?? new Error("the answer is too long"));
      chunks.push(chunk);
      callback();
    },
  });
  await pipeline(res, sink);
  return Buffer.concat(chunks);
}
