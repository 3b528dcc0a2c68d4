/**
 * The daemon's contract (`client/src/web/api.ts`, which `zimchat-chat web`
 * implements) as the UI uses it. Types only: esbuild drops these imports, so
 * no daemon code reaches the bundle.
 */
import type { WebMe } from "../../src/web/api";

export type {
  WebAttachment,
  WebConversation,
  WebFileResponse,
  WebCreateGroupResponse,
  WebGroup,
  WebGroupMember,
  WebGroupMembersRequest,
  WebLinkCode,
  WebSafetyNumber,
  WebEvent,
  WebMe,
  WebMessage,
  WebMessageStatus,
  WebRegisterRequest,
  WebSendRequest,
  WebSendResponse,
} from "../../src/web/api";

/** `GET /api/me` (and the answer to `POST /api/register`) once the profile holds a device. */
export type RegisteredMe = Extract<WebMe, { registered: true }>;
