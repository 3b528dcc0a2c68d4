/**
 * The JSON and WebSocket contract between the local daemon (`zimchat-chat web`)
 * and this page. A copy of the daemon's own types until the UI imports them
 * from `client/src/web/api.ts`; keep the two identical.
 */

/** `GET /api/me` before a device is registered in the profile. */
export interface Unregistered {
  registered: false;
}

/** `GET /api/me` (and `POST /api/register`) once the profile holds a device. */
export interface Registered {
  registered: true;
  username: string;
  uuid: string;
  deviceId: number;
  server: string;
  /** Whether the daemon is connected to the homeserver right now. */
  online: boolean;
}

/** `GET /api/me`. */
export type Me = Unregistered | Registered;

/** `POST /api/register` body. */
export interface RegisterRequest {
  server: string;
  username: string;
  invite?: string;
}

/** The last message of a conversation, as the list shows it. */
export interface LastMessage {
  text: string;
  /** Milliseconds since the epoch, or an ISO date. */
  at: number | string;
  outgoing: boolean;
}

/** One row of `GET /api/conversations` (most recent first). */
export interface Conversation {
  /** The other account's id, or `group:<id>`. */
  id: string;
  kind: "direct" | "group";
  title: string;
  unread: number;
  last?: LastMessage;
}

/**
 * Where a message is: queued in the daemon (typed while the homeserver was unreachable), sent to the server,
 * delivered to a recipient's device, received from someone else, or failed (a queued message the server then refused).
 */
export type MessageStatus = "queued" | "sent" | "delivered" | "received" | "failed";

/** One message of `GET /api/conversations/:id/messages` (oldest first). */
export interface Message {
  id: string;
  /** The author's account id. */
  author: string;
  authorName: string;
  outgoing: boolean;
  text: string;
  at: number | string;
  status: MessageStatus;
}

/** `POST /api/send` body: `to` is a username or a conversation id. */
export interface SendRequest {
  to: string;
  text: string;
}

/** `POST /api/send` answer. */
export interface SendResult {
  conversation: string;
  id: string;
  status: "sent" | "queued";
}

/** An error answer of any `/api/*` route. */
export interface ApiErrorBody {
  error: string;
  message?: string;
}

/** What the daemon pushes on the WebSocket `/api/events`. */
export type ServerEvent =
  | { type: "message"; conversation: string; message: Message }
  | { type: "status"; conversation: string; id: string; status: MessageStatus }
  | { type: "conversations" }
  | { type: "connection"; online: boolean };
