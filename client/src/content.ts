/**
 * The plaintext inside every encrypted message: a small versioned structure,
 * padded before encryption to a multiple of 160 bytes (as Signal clients do)
 * so ciphertext lengths leak only a coarse size class.
 */
import { z } from "zod";
import { limits, serverNameSchema, usernameSchema } from "@zimchat/protocol";
import { attachmentPointerSchema } from "./attachments.js";

const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
const base64 = (maxBytes: number) =>
  z
    .string()
    .max(Math.ceil(maxBytes / 3) * 4)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/);

/** Bridges a group may have, at most. */
export const maxGroupBridges = 8;

/**
 * A bridge of a group: a bot account (a member) that decrypts the group's
 * messages and relays them in plaintext to a chat network outside ZimChat
 * (an IRC channel, an XMPP room). Every member's client shows it with
 * `bridgeBanner`.
 */
export const groupBridgeSchema = z.object({
  /** The bot's account id; it must be a member of the group. */
  account: uuid,
  network: z.enum(["irc", "xmpp"]),
  /** Where it relays to on that network: an IRC channel (`#club`), an XMPP room (`club@rooms.example`). */
  target: z.string().min(1).max(256),
  /** Attachments are relayed too (absent: false). */
  attachments: z.boolean().optional(),
});
/** One bridge of a group (see {@link groupBridgeSchema}). */
export type GroupBridge = z.infer<typeof groupBridgeSchema>;

/** A group's state as its admins last set it (groups live on the clients only). */
export const groupStateSchema = z.object({
  id: uuid,
  title: z.string().min(1).max(128),
  members: z.array(uuid).min(1).max(limits.maxGroupRecipients),
  admins: z.array(uuid).min(1).max(limits.maxGroupRecipients),
  /** Increases with every change; older updates are ignored. */
  revision: z.number().int().min(0),
  /**
   * Federation: the homeserver (its federation name) of each member that is
   * not on the same server as whoever sent this state; members not listed
   * are on the sender's server. Absent: every member is (groups of one
   * server, and groups stored before federation). Each device keeps it in
   * its own view (relative to itself) and routes by its own server bindings.
   */
  memberServers: z.record(uuid, serverNameSchema).optional(),
  /**
   * The group's bridges (bots that decrypt its messages and relay them
   * outside ZimChat), at most one per account; each account is a member.
   * Absent: none (and every group stored before bridges).
   */
  bridges: z.array(groupBridgeSchema).max(maxGroupBridges).optional(),
});
export type GroupState = z.infer<typeof groupStateSchema>;

/** Content version 1. */
export const contentSchema = z.object({
  v: z.literal(1),
  /**
   * The message's id, chosen by the sender (a random UUID): a receiver shows
   * a message once per sender and id, whatever envelopes carry it. Absent
   * from older senders (then sender device and timestamp identify it).
   */
  id: uuid.optional(),
  /** A text message (or an attachment's caption). */
  text: z
    .string()
    .max(64 * 1024)
    .optional(),
  /** The sender's clock, ms since the epoch. */
  timestamp: z.number().int(),
  /** A delivery receipt for these message timestamps. */
  receipt: z.object({ timestamps: z.array(z.number().int()).max(100) }).optional(),
  /** The sender's unidentified access key (base64), so the recipient can send it sealed messages. */
  accessKey: base64(16).optional(),
  /** An encrypted attachment. */
  attachment: attachmentPointerSchema.optional(),
  /** The message belongs to this group. */
  group: z.object({ id: uuid }).optional(),
  /** A group was created or changed by one of its admins. */
  groupUpdate: groupStateSchema.optional(),
  /** The sender's sender key for a group (a serialized libsignal SenderKeyDistributionMessage). */
  senderKey: z.object({ groupId: uuid, message: base64(1024) }).optional(),
  /**
   * A sent transcript: this account's other device sent this content to
   * `destination` (or to the group in `group`); shown as an outgoing message.
   * `server`: the other homeserver `destination` belongs to (federation).
   */
  sync: z.object({ destination: uuid.optional(), server: serverNameSchema.optional() }).optional(),
  /**
   * The sender's name as they claim it: their username (the receiver checks
   * that it belongs to the sender's account before showing it) and an
   * optional display name (never verified). Only ever inside ciphertext.
   */
  profile: z.object({ username: usernameSchema, displayName: z.string().min(1).max(64).optional() }).optional(),
  /**
   * With a group change: the usernames of members as the admin knows them,
   * so members who never wrote to each other see names. Claims like
   * `profile`: each is checked by the receiver before it is shown.
   */
  memberNames: z
    .array(z.object({ uuid, username: usernameSchema }))
    .max(limits.maxGroupRecipients)
    .optional(),
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
  // Decoded in place (a Buffer over the same memory), not copied first.
  return contentSchema.parse(JSON.parse(Buffer.from(padded.buffer, padded.byteOffset, end).toString("utf8")));
}
