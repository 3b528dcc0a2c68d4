/**
 * The local web client's contract: the JSON bodies of the daemon's HTTP API
 * (`/api/*`, same origin, cookie auth) and the events of its WebSocket
 * (`/api/events`). The browser UI imports these types; the daemon
 * (`startWebDaemon`) implements them. Nothing here ever carries key
 * material, session state or passwords.
 */

/** The cookie `POST /api/session` sets (HttpOnly, SameSite=Strict, Path=/). */
export const webSessionCookie = "zimchat_web";

/** Largest JSON request body the daemon reads (a larger one is a 413). */
export const maxWebJsonBytes = 64 * 1024;

/**
 * Largest file `POST /api/files` takes (a larger one is a 413 `body_too_large`,
 * refused from its `Content-Length` before any byte is read): 95 MiB, so that
 * the encrypted, padded blob stays under the homeserver's default attachment
 * limit (100 MiB, `ZIMCHAT_ATTACHMENT_MAX_MIB`). A homeserver configured lower
 * refuses larger files itself (413 `body_too_large`, passed on).
 */
export const maxWebUploadBytes = 95 * 1024 * 1024;

/** `GET /api/messages` default and largest `limit`. */
export const webMessageLimits = { default: 100, max: 500 } as const;

/** `POST /api/session`: exchanges the launch token (from the URL fragment) for the session cookie; 204. */
export interface WebSessionRequest {
  token: string;
}

/** `GET /api/me` (and the answer to `POST /api/register`). */
export type WebMe =
  | {
      registered: false;
      /** A link to an existing account waiting for the primary's approval (`POST /api/link`), if any. */
      linking?: WebLinkCode;
    }
  | {
      registered: true;
      username: string;
      /** The account id. */
      uuid: string;
      deviceId: number;
      /** The homeserver's URL. */
      server: string;
      /** Whether the daemon is connected to the homeserver now. */
      online: boolean;
    };

/** `POST /api/register`: creates the account and this device in the daemon's profile. */
export interface WebRegisterRequest {
  /** The homeserver, like `http://127.0.0.1:8080`. */
  server: string;
  username: string;
  invite?: string;
}

/** `direct`: an account id; `group`: `group:<id>`. */
export type WebConversationKind = "direct" | "group";

/** One entry of `GET /api/conversations` (most recent first). */
export interface WebConversation {
  /** An account id, or `group:<id>`. */
  id: string;
  kind: WebConversationKind;
  /** A verified username (`name@server` for another homeserver's user), a group's title, else a short account id. */
  title: string;
  /** Received messages not yet marked read (`POST /api/conversations/:id/read`). */
  unread: number;
  last?: { text: string; at: number; outgoing: boolean };
  /**
   * A direct conversation whose verified contact's safety number changed:
   * sending is refused (409 `identity_changed`) until the change is accepted
   * (`POST /api/identity/:user/accept`) or the new number verified. Absent otherwise.
   */
  keyChanged?: true;
  /**
   * A bridged group: one disclosure per bridge (the SDK's `bridgeBanner`, like
   * "Bridged: messages in this group are decrypted by ircbridge and sent in
   * plaintext to IRC #club. Attachments are not bridged."), to show for as
   * long as the group is shown. Absent for a group without bridges.
   */
  bridges?: string[];
}

/**
 * Where a message is: `queued` (typed while the homeserver was unreachable:
 * kept in the profile, sent on reconnect), `sent` (the homeserver has it),
 * `delivered` (a recipient's device decrypted it), `received` (someone
 * else's message), `failed` (a queued message the homeserver then refused;
 * it is dropped: an addition to the first contract, only in `status` events).
 */
export type WebMessageStatus = "queued" | "sent" | "delivered" | "received" | "failed";

/** One message (`GET /api/conversations/:id/messages`, oldest first; `message` events). */
export interface WebMessage {
  /** The envelope id of a received message, the store's id of a sent one, a temporary id while queued. */
  id: string;
  /** The author's account id. */
  author: string;
  /** The author's verified username (or short account id; "you" is not used: see `outgoing`). */
  authorName: string;
  outgoing: boolean;
  text: string;
  /** The sender's timestamp (ms since the epoch). */
  at: number;
  status: WebMessageStatus;
  /**
   * A file sent with the message (`text` is then its caption, often empty):
   * download it with `GET /api/files/:conversation/:id`. Only its name and
   * size: the key and digest that open it stay in the daemon.
   */
  attachment?: WebAttachment;
}

/** What the page learns of a file: never its key, digest or server id. */
export interface WebAttachment {
  /** The sender's file name (`file` when it gave none). */
  name: string;
  /** Bytes of the file itself. */
  size: number;
}

/** `POST /api/send`. */
export interface WebSendRequest {
  /** A username, `name@server`, an account id, or `group:<id>`. */
  to: string;
  text: string;
}

/** The answer to `POST /api/send`. */
export interface WebSendResponse {
  /** The conversation it went to (an account id or `group:<id>`). */
  conversation: string;
  id: string;
  status: "sent" | "queued";
}

/**
 * The answer to `POST /api/files?to=<conversation or username>&name=<file name>`
 * (the body: the file's bytes, at most {@link maxWebUploadBytes}): the file was
 * encrypted, uploaded and its message sent. Unlike texts, files are not
 * queued: with the homeserver unreachable it is a 502 `unreachable`.
 */
export interface WebFileResponse {
  conversation: string;
  /** The message's id (for `GET /api/files/:conversation/:id`). */
  id: string;
  status: "sent";
  attachment: WebAttachment;
}

/** `POST /api/groups` (an addition): creates a group with this account as admin. */
export interface WebCreateGroupRequest {
  title: string;
  /** Usernames (`name@server` for another homeserver's users) of the other members. */
  members: string[];
}

/** The answer to `POST /api/groups`. */
export interface WebCreateGroupResponse {
  /** `group:<id>`. */
  conversation: string;
  title: string;
  members: string[];
}

/** One member in {@link WebGroup}. */
export interface WebGroupMember {
  /** The account id. */
  uuid: string;
  /** The verified username (`name@server` for another homeserver's user), else a short account id. */
  name: string;
  admin: boolean;
  /** This account. */
  you?: true;
}

/**
 * `GET /api/groups/:id` (`:id` is the conversation id `group:<id>`, or the
 * bare group id), and the answer to `POST /api/groups/:id/members` and
 * `POST /api/groups/:id/leave`.
 */
export interface WebGroup {
  /** The conversation id, `group:<id>`. */
  id: string;
  title: string;
  /** Admins first, then by name. */
  members: WebGroupMember[];
  /** Whether this account is an admin (may add and remove members). */
  admin: boolean;
  /** Whether this account is still a member (false once it left or was removed). */
  member: boolean;
}

/**
 * `POST /api/groups/:id/members` (admins only): usernames to add, usernames
 * or account ids to remove; at least one. A member who is not an admin is
 * refused with 409 `not_group_admin`, one no longer in the group with 409
 * `not_group_member`.
 */
export interface WebGroupMembersRequest {
  add?: string[];
  remove?: string[];
}

/**
 * `POST /api/link` (a profile with no device): links this profile to an
 * existing account as a new device. The answer is the code to show; the
 * daemon then waits for the primary's approval and sends a `linked` (or
 * `linkFailed`) event.
 */
export interface WebLinkRequest {
  /** The account's homeserver, like `https://chat.example.org`. */
  server: string;
}

/** The answer to `POST /api/link`: what the primary device approves (`zimchat-chat approve-link '<uri>'`). */
export interface WebLinkCode {
  /** `zimchat-link:?server=…&code=…&key=…`: holds no secret (a one-time code and a public key). */
  uri: string;
  /** The URI as a QR code, an SVG document. */
  qrSvg: string;
  /** When the code stops working (ms since the epoch). */
  expiresAt: number;
}

/** `POST /api/link/approve` (the primary device, device 1): approves a new device's link URI; 204. */
export interface WebApproveLinkRequest {
  uri: string;
}

/** `GET /api/safety/:user` (an addition). */
export interface WebSafetyNumber {
  /** 60 digits in twelve groups of five, space-separated. */
  digits: string;
  /** The QR code of the scannable payload, as an SVG document. */
  qrSvg: string;
  verified: boolean;
  /**
   * Their key changed after they were verified: sending is blocked until
   * `POST /api/identity/:user/accept` or a verify with the new number.
   */
  keyChanged: boolean;
}

/** `POST /api/safety/:user/verify` (an addition): the digits (or scanned payload) the other person's screen shows. */
export interface WebVerifyRequest {
  number: string;
}

/** Every error body: `{ error, message? }`; a refusal by the daemon's guards is a 403 with `reason`. */
export type WebError =
  { error: "forbidden"; reason: "token" | "host" | "origin" | "cookie" } | { error: string; message?: string };

/** What the daemon sends over `/api/events` (the page sends nothing). */
export type WebEvent =
  | { type: "message"; conversation: string; message: WebMessage }
  | { type: "status"; conversation: string; id: string; status: WebMessageStatus }
  /** The conversation list changed: fetch it again. */
  | { type: "conversations" }
  | { type: "connection"; online: boolean }
  /** A group's members or admins changed (fetch `GET /api/groups/:id` again if it is shown). */
  | { type: "group"; conversation: string }
  /** `POST /api/link` finished: this profile is now a device of the account. */
  | { type: "linked"; me: Extract<WebMe, { registered: true }> }
  /** `POST /api/link` ended without a device (the code expired, or the homeserver refused). */
  | { type: "linkFailed"; error: string; message: string }
  /**
   * A contact's safety number changed (their identity key: a reinstall, or
   * someone in between). `blocked`: they had been verified, so sending to them
   * is refused until the change is accepted; their conversation has `keyChanged`.
   */
  | { type: "identityChanged"; conversation: string; blocked: boolean }
  /** A group's bridges changed: fetch the list again for its `bridges` banners. */
  | { type: "bridges"; conversation: string };
