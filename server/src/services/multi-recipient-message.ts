// The server-side parser is not re-exported from the package index.
import SealedSenderMultiRecipientMessage from "@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js";
import { limits } from "@zimchat/protocol";
import type { Bytes } from "../db/database.js";
import { HttpError } from "../errors.js";

/** The "original" Sealed Sender v2 version byte that starts every per-recipient message. */
const receivedMessageVersion = 0x22;

/** One recipient of a multi-recipient message: its devices and its own small header. */
export interface MultiRecipientEntry {
  uuid: string;
  devices: { deviceId: number; registrationId: number }[];
  /**
   * The version byte and this recipient's key material (tens of bytes): the
   * recipient's sealed message is `header || shared`. A copy, so the request
   * body can be released while the header waits in a batch.
   */
  header: Bytes;
}

/**
 * A multi-recipient message parsed down to what access checks and storage need, with no per-recipient copy of the
 * shared part.
 */
export interface ParsedMultiRecipient {
  recipients: MultiRecipientEntry[];
  /** The part every recipient's message ends with (a view into the request body, never copied per recipient). */
  shared: Bytes;
}

/** The native recipient record libsignal keeps: where this recipient's key material sits in the buffer. */
interface NativeRecipient {
  deviceIds: number[];
  registrationIds: number[];
  rangeOffset: number;
  rangeLen: number;
}

/**
 * Parses a multi-recipient message with libsignal (one native parse of the
 * recipient list) and does the cheap checks before anything per recipient:
 * the recipient count and devices named twice. Each recipient's message
 * size is `header + shared` (checked by the mailbox, never built). Recipients
 * whose service id is not an account uuid (e.g. a PNI) stay in the list, so
 * they are refused as unknown.
 *
 * The per-recipient message is assembled exactly as libsignal's
 * `messageForRecipient` does (version byte, the recipient's range, the shared
 * data); a test checks the bytes are identical.
 * @throws HttpError `invalid_ciphertext` or `invalid_request`
 */
export function parseMultiRecipient(bytes: Bytes): ParsedMultiRecipient {
  let parsed: SealedSenderMultiRecipientMessage;
  try {
    parsed = new SealedSenderMultiRecipientMessage(bytes);
  } catch (error) {
    throw new HttpError(
      "invalid_ciphertext",
      "message is not a libsignal sealed-sender multi-recipient message",
      {},
      {},
      { cause: error },
    );
  }
  const entries = Object.entries(parsed.recipientsByServiceIdString() as Record<string, NativeRecipient>);
  if (!entries.length) throw new HttpError("invalid_request", "The message names no recipients");
  if (entries.length > limits.maxGroupRecipients) {
    throw new HttpError(
      "invalid_request",
      `A multi-recipient message may name at most ${limits.maxGroupRecipients} recipients`,
    );
  }
  const sharedOffset = parsed._offsetOfSharedData;
  if (!Number.isInteger(sharedOffset) || sharedOffset > bytes.length)
    throw new Error("libsignal's multi-recipient layout changed: no shared-data offset");
  const shared = bytes.subarray(sharedOffset) as Bytes;
  const recipients = entries.map(([uuid, recipient]): MultiRecipientEntry => {
    const devices = recipient.deviceIds.map((deviceId, i) => ({
      deviceId,
      registrationId: recipient.registrationIds[i] ?? 0,
    }));
    if (new Set(recipient.deviceIds).size !== devices.length) {
      throw new HttpError("invalid_ciphertext", "The message names a recipient's device twice");
    }
    const { rangeOffset, rangeLen } = recipient;
    if (!Number.isInteger(rangeOffset) || !Number.isInteger(rangeLen))
      throw new Error("libsignal's multi-recipient layout changed: no recipient range");
    const header = new Uint8Array(1 + rangeLen) as Bytes;
    header[0] = receivedMessageVersion;
    header.set(bytes.subarray(rangeOffset, rangeOffset + rangeLen), 1);
    return { uuid, devices, header };
  });
  return { recipients, shared };
}

/**
 * One recipient's sealed message: its header followed by the shared part (what libsignal's `messageForRecipient`
 * returns).
 */
export function assembleForRecipient(header: Uint8Array, shared: Uint8Array): Bytes {
  const out = new Uint8Array(header.length + shared.length) as Bytes;
  out.set(header, 0);
  out.set(shared, header.length);
  return out;
}

/**
 * The shared part of one multi-recipient send, on its way to storage: its id
 * and bytes, and its base64 for pushing to online devices. Each recipient's
 * wire content is the base64 of a few bytes (its header plus up to two
 * bytes of the shared part, to a multiple of three) joined to one of at most
 * three base64 strings of the rest, so the shared part is encoded at most
 * three times, never once per recipient (V8 joins the strings without copying).
 */
export class SharedPayloadRef {
  private readonly tails = new Map<number, string>();

  constructor(
    readonly id: string,
    readonly bytes: Bytes,
  ) {}

  /** The base64 of `header || shared`. */
  wireContent(header: Uint8Array): string {
    const lead = (3 - (header.length % 3)) % 3;
    const split = Math.min(lead, this.bytes.length);
    let tail = this.tails.get(split);
    if (tail === undefined) {
      tail = Buffer.from(this.bytes.buffer, this.bytes.byteOffset + split, this.bytes.length - split).toString(
        "base64",
      );
      this.tails.set(split, tail);
    }
    const head = Buffer.concat([header, this.bytes.subarray(0, split)]).toString("base64");
    return head + tail;
  }
}
