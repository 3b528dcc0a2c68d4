import type {
  AttachmentInput,
  AttachmentPointer,
  DecryptionFailureReason,
  DeviceListChangedEvent,
  GroupUpdatedEvent,
  KeyTransparencyFailure,
  RemoteDeliveryFailedEvent,
  SafetyNumber,
  SenderName,
  UploadOptions,
  ZimClient,
} from "@zimchat/client";
import { missingCase } from "@zimchat/protocol";
import type { Bot } from "./bot.js";

/** A decrypted message the bot received, from a user or in a group. */
export interface IncomingMessage {
  /** The envelope id (unique; redeliveries are not shown twice). */
  id: string;
  /** The author's account id. */
  from: string;
  fromDevice: number;
  /** The other homeserver the author belongs to (federation); absent for the bot's own homeserver's users. */
  fromServer?: string;
  /** The conversation: the author's account id, or `group:<id>`. */
  conversation: string;
  /** The group id, for group messages. */
  group?: string;
  /** The text ("" for an attachment without a caption). */
  text: string;
  attachment?: AttachmentPointer;
  /** The sender's timestamp. */
  timestamp: number;
  /** The server did not know who sent it (sealed sender). */
  sealed: boolean;
  /** The name the author claimed in the message, and whether the client verified it (see `Context.fromUsername`). */
  senderName?: SenderName;
}

/** Where a reply goes: the author (a direct chat) or the group. */
export interface Chat {
  /** The conversation: an account id, or `group:<id>` (also the default session key). */
  id: string;
  type: "direct" | "group";
  /** The group id, for group chats. */
  groupId?: string;
}

/** A user's identity key changed, and what the bot's `onIdentityChange` policy did about it. */
export interface IdentityChange {
  uuid: string;
  /**
   * `accepted`: the bot keeps talking to the new key (unverified); `blocked`: messages are not dispatched and replies
   * refused until re-verified.
   */
  action: "accepted" | "blocked";
}

/** An envelope the bot could not decrypt (acknowledged and dropped by the client). */
export interface DecryptionFailure {
  envelopeId: string;
  /** The sender's account id, when the envelope named one. */
  from?: string;
  reason: DecryptionFailureReason;
  /** libsignal's error (never carries key material). */
  error: unknown;
}

/** What happened: one update per received message, group change, identity change or decryption failure. */
export type BotUpdate =
  | { type: "message"; message: IncomingMessage }
  | { type: "group_update"; groupUpdate: GroupUpdatedEvent }
  | { type: "identity_changed"; identityChange: IdentityChange }
  | { type: "decryption_failed"; failure: DecryptionFailure }
  | { type: "device_list_changed"; devices: DeviceListChangedEvent }
  | { type: "key_transparency_failure"; keyTransparency: KeyTransparencyFailure }
  | { type: "remote_delivery_failed"; remoteDelivery: RemoteDeliveryFailedEvent };

/**
 * Which updates a handler of `bot.on(...)` sees:
 * - `message`: every message, direct or in a group (text, attachment, or both)
 * - `direct_message`, `group_message`: only those
 * - `text`: messages with non-empty text; `attachment`: messages with an attachment
 * - `group_update`: a group the bot is in was created or changed
 * - `identity_changed`: a user's safety number changed
 * - `decryption_failed`: an envelope could not be decrypted (with the reason)
 * - `device_list_changed`: a device was linked to or removed from the bot's own account
 * - `key_transparency_failure`: an identity key the server handed out is not in its
 *   key-transparency log, or the log was rewritten (compare safety numbers with that user)
 * - `remote_delivery_failed`: a message the bot sent to a user of another homeserver, which the bot's
 *   homeserver had queued, will not be delivered (device changes are repaired and re-sent without this)
 */
export type UpdateFilter =
  | "message"
  | "direct_message"
  | "group_message"
  | "text"
  | "attachment"
  | "group_update"
  | "identity_changed"
  | "decryption_failed"
  | "device_list_changed"
  | "key_transparency_failure"
  | "remote_delivery_failed";

interface MessageFields {
  message: IncomingMessage;
  chat: Chat;
  from: string;
}

type FilterFields<F extends UpdateFilter> = F extends "attachment"
  ? MessageFields & { message: { attachment: AttachmentPointer } }
  : F extends "message" | "direct_message" | "group_message" | "text"
    ? MessageFields
    : F extends "group_update"
      ? { groupUpdate: GroupUpdatedEvent; chat: Chat; from: string }
      : F extends "identity_changed"
        ? { identityChange: IdentityChange; chat: Chat; from: string }
        : F extends "decryption_failed"
          ? { failure: DecryptionFailure }
          : F extends "device_list_changed"
            ? { devices: DeviceListChangedEvent }
            : F extends "key_transparency_failure"
              ? { keyTransparency: KeyTransparencyFailure }
              : F extends "remote_delivery_failed"
                ? { remoteDelivery: RemoteDeliveryFailedEvent }
                : never;

/** The context type a handler for filter `F` receives: the fields that filter guarantees are present. */
export type Filtered<C extends Context, F extends UpdateFilter> = C & FilterFields<F>;

/** The context of a command handler: the command's name, its arguments split on spaces, and the rest of the line. */
export type CommandContext<C extends Context> = Filtered<C, "message"> & {
  command: string;
  args: string[];
  match: string;
};

/** The context of a `hears` handler: the regular expression's match. */
export type HearsContext<C extends Context> = Filtered<C, "message"> & { match: RegExpMatchArray };

/** Whether an update passes a filter. */
export function matchesFilter(update: BotUpdate, filter: UpdateFilter): boolean {
  switch (filter) {
    case "message":
      return update.type === "message";
    case "direct_message":
      return update.type === "message" && update.message.group === undefined;
    case "group_message":
      return update.type === "message" && update.message.group !== undefined;
    case "text":
      return update.type === "message" && update.message.text !== "";
    case "attachment":
      return update.type === "message" && update.message.attachment !== undefined;
    case "group_update":
    case "identity_changed":
    case "decryption_failed":
    case "device_list_changed":
    case "key_transparency_failure":
    case "remote_delivery_failed":
      return update.type === filter;
    default:
      return missingCase(filter);
  }
}

/**
 * What a handler gets: the update, shortcuts to its parts, and replies that
 * go back where the update came from (to the author, or to the group), end
 * to end encrypted by the bot's own device.
 */
export class Context {
  /** The command's name, for command handlers (`remind` for `/remind 10m tea`). */
  command?: string;
  /** A command's arguments split on whitespace (`["10m", "tea"]`). */
  args: string[] = [];
  /** A command's text after its name (`"10m tea"`), or a `hears` regular expression's match. */
  match?: string | RegExpMatchArray;

  constructor(
    /** What happened. */
    readonly update: BotUpdate,
    /** The bot handling it. */
    readonly bot: Bot<Context>,
    /** Whether the author may be replied to (not for a failure from someone off the allowlist). */
    private readonly replyable = true,
  ) {}

  /** The bot's ZimChat client (its own device), for anything the shortcuts do not cover. */
  get client(): ZimClient {
    return this.bot.client;
  }

  /** The message, for message updates. */
  get message(): IncomingMessage | undefined {
    return this.update.type === "message" ? this.update.message : undefined;
  }

  /** The group change, for `group_update`. */
  get groupUpdate(): GroupUpdatedEvent | undefined {
    return this.update.type === "group_update" ? this.update.groupUpdate : undefined;
  }

  /** The identity change, for `identity_changed`. */
  get identityChange(): IdentityChange | undefined {
    return this.update.type === "identity_changed" ? this.update.identityChange : undefined;
  }

  /** The failure, for `decryption_failed`. */
  get failure(): DecryptionFailure | undefined {
    return this.update.type === "decryption_failed" ? this.update.failure : undefined;
  }

  /** The bot account's devices, for `device_list_changed`. */
  get devices(): DeviceListChangedEvent | undefined {
    return this.update.type === "device_list_changed" ? this.update.devices : undefined;
  }

  /** The undelivered message (its recipient, server and why), for `remote_delivery_failed`. */
  get remoteDelivery(): RemoteDeliveryFailedEvent | undefined {
    return this.update.type === "remote_delivery_failed" ? this.update.remoteDelivery : undefined;
  }

  /** The failed check, for `key_transparency_failure`. */
  get keyTransparency(): KeyTransparencyFailure | undefined {
    return this.update.type === "key_transparency_failure" ? this.update.keyTransparency : undefined;
  }

  /** The account id of whoever caused the update (author, group admin, user whose key changed), when known. */
  get from(): string | undefined {
    const u = this.update;
    switch (u.type) {
      case "message":
        return u.message.from;
      case "group_update":
        return u.groupUpdate.by;
      case "identity_changed":
        return u.identityChange.uuid;
      case "decryption_failed":
        return u.failure.from;
      case "device_list_changed":
      case "remote_delivery_failed":
        return undefined;
      case "key_transparency_failure":
        return u.keyTransparency.accountId;
      default:
        return missingCase(u);
    }
  }

  /**
   * The verified username of whoever caused a message or group update
   * (their claim, checked against the server's directory), when known;
   * undefined for an unverified claim, so it is safe to show or match on.
   */
  get fromUsername(): string | undefined {
    const u = this.update;
    const name =
      u.type === "message"
        ? u.message.senderName
        : u.type === "group_update"
          ? u.groupUpdate.names?.[u.groupUpdate.by]
          : undefined;
    return name?.verified ? name.username : undefined;
  }

  /**
   * The other homeserver whoever caused the update belongs to (federation: their username is then
   * `name@server`), or undefined for the bot's own homeserver's users.
   */
  get fromServer(): string | undefined {
    const from = this.from;
    return from === undefined ? undefined : (this.client.serverOf(from) ?? undefined);
  }

  /** Where replies go; undefined when there is nobody to reply to. */
  get chat(): Chat | undefined {
    const u = this.update;
    if (u.type === "message" && u.message.group !== undefined)
      return { id: u.message.conversation, type: "group", groupId: u.message.group };
    if (u.type === "group_update" && !u.groupUpdate.left)
      return { id: `group:${u.groupUpdate.group.id}`, type: "group", groupId: u.groupUpdate.group.id };
    const from = this.from;
    if (from === undefined || !this.replyable || u.type === "group_update") return undefined;
    return { id: from, type: "direct" };
  }

  /** Sends a text to the chat (the author, or the group). */
  async reply(text: string): Promise<{ timestamp: number }> {
    const chat = this.requireChat();
    const { timestamp } =
      chat.groupId !== undefined
        ? await this.client.sendGroupText(chat.groupId, text)
        : await this.client.sendText(chat.id, text);
    return { timestamp };
  }

  /** Encrypts and uploads a file (a path, bytes or a stream), then sends it to the chat, with an optional caption. */
  async replyWithFile(
    source: AttachmentInput,
    options: UploadOptions & { caption?: string } = {},
  ): Promise<{ timestamp: number; attachment: AttachmentPointer }> {
    const chat = this.requireChat();
    return chat.groupId !== undefined
      ? this.client.sendGroupAttachment(chat.groupId, source, options)
      : this.client.sendAttachment(chat.id, source, options);
  }

  /**
   * Downloads and decrypts the message's attachment (its digest checked):
   * the bytes, or written to `destination`.
   */
  downloadAttachment(): Promise<Buffer>;
  downloadAttachment(destination: string): Promise<void>;
  async downloadAttachment(destination?: string): Promise<Buffer | void> {
    const pointer = this.message?.attachment;
    if (!pointer) throw new Error(`this ${this.update.type} update has no attachment`);
    return destination === undefined
      ? this.client.downloadAttachment(pointer)
      : this.client.downloadAttachment(pointer, destination);
  }

  /** The safety number between the bot and `user` (default: whoever caused the update), computed by libsignal. */
  async safetyNumber(user = this.requireFrom()): Promise<SafetyNumber> {
    return this.client.safetyNumber(user);
  }

  /**
   * Marks the author verified when `entered` (60 digits, spaces ignored, or a
   * scanned payload) equals the safety number; lifts an identity block.
   * @returns whether it matched
   */
  async verify(entered: string): Promise<boolean> {
    return this.client.verify(this.requireFrom(), entered);
  }

  /** Whether the bot has verified the author's current identity key. */
  async isVerified(): Promise<boolean> {
    return (await this.client.trustState(this.requireFrom()))?.verified ?? false;
  }

  private requireFrom(): string {
    const from = this.from;
    if (from === undefined) throw new Error(`this ${this.update.type} update names nobody`);
    return from;
  }

  private requireChat(): Chat {
    const chat = this.chat;
    if (!chat) throw new Error(`there is nobody to reply to for this ${this.update.type} update`);
    return chat;
  }
}
