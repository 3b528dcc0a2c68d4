/**
 * The daemon's JSON API as functions: same-origin fetches that carry the
 * session cookie, JSON in and out, and one error class for every failure.
 */
import type {
  WebCreateGroupResponse,
  WebGroup,
  WebGroupMembersRequest,
  WebLinkCode,
  WebSafetyNumber,
  WebConversation,
  WebMe,
  WebMessage,
  WebRegisterRequest,
  RegisteredMe,
  WebSendRequest,
  WebSendResponse,
} from "./api-types";

/** A failed API call: the HTTP status (0 when the daemon could not be reached) and the daemon's error code. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The daemon has no such route (an older daemon without an optional feature: groups, safety numbers). */
  isMissingRoute(): boolean {
    return this.status === 404 && this.code === "not_found" && this.message.startsWith("no ");
  }

  /** The session cookie is missing or was refused: the page needs the link the daemon printed. */
  isUnauthorized(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

async function request<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
    });
  } catch (cause) {
    throw new ApiError(
      "The local ZimChat daemon cannot be reached. Is `zimchat-chat web` still running?",
      0,
      "unreachable",
      {
        cause,
      },
    );
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    const error = json as { error?: unknown; message?: unknown } | undefined;
    throw new ApiError(
      typeof error?.message === "string" ? error.message : `${method} ${path} failed (HTTP ${response.status})`,
      response.status,
      typeof error?.error === "string" ? error.error : "http_error",
    );
  }
  return json as T;
}

/** Exchanges the launch token from the URL fragment for the session cookie. */
export function startSession(token: string): Promise<void> {
  return request("POST", "/api/session", { token });
}

/** Who this profile is, or that it holds no device yet. */
export function getMe(): Promise<WebMe> {
  return request("GET", "/api/me");
}

/** Registers a new account and device in this profile. */
export function register(body: WebRegisterRequest): Promise<RegisteredMe> {
  return request("POST", "/api/register", body);
}

/** Every conversation, most recent first. */
export function getConversations(): Promise<WebConversation[]> {
  return request("GET", "/api/conversations");
}

/** The last `limit` messages of a conversation, oldest first. */
export function getMessages(conversation: string, limit = 200): Promise<WebMessage[]> {
  return request("GET", `/api/conversations/${encodeURIComponent(conversation)}/messages?limit=${limit}`);
}

/** Marks a conversation read. */
export function markRead(conversation: string): Promise<void> {
  return request("POST", `/api/conversations/${encodeURIComponent(conversation)}/read`);
}

/** Sends a text to a username or a conversation id. */
export function send(body: WebSendRequest): Promise<WebSendResponse> {
  return request("POST", "/api/send", body);
}

/** Creates a group with this account as admin and `members` (usernames) in it. */
export function createGroup(title: string, members: string[]): Promise<WebCreateGroupResponse> {
  return request("POST", "/api/groups", { title, members });
}

/** The safety number with `user` (a username or account id), and whether they are verified. */
export function getSafetyNumber(user: string): Promise<WebSafetyNumber> {
  return request("GET", `/api/safety/${encodeURIComponent(user)}`);
}

/** Marks `user` verified: `number` is what their screen shows; without it, the numbers were compared in person. */
export function verifySafetyNumber(user: string, number?: string): Promise<WebSafetyNumber> {
  return request("POST", `/api/safety/${encodeURIComponent(user)}/verify`, number ? { number } : {});
}

/** A group's members (with admin marks) and whether this account is an admin and still a member. */
export function getGroup(conversation: string): Promise<WebGroup> {
  return request("GET", `/api/groups/${encodeURIComponent(conversation)}`);
}

/** Adds (usernames) and removes (usernames or account ids) members of a group; admins only. */
export function changeGroupMembers(conversation: string, body: WebGroupMembersRequest): Promise<WebGroup> {
  return request("POST", `/api/groups/${encodeURIComponent(conversation)}/members`, body);
}

/** Leaves a group. */
export function leaveGroup(conversation: string): Promise<WebGroup> {
  return request("POST", `/api/groups/${encodeURIComponent(conversation)}/leave`);
}

/** Starts linking this profile to an existing account on `server`: the code for the primary device to approve. */
export function startLink(server: string): Promise<WebLinkCode> {
  return request("POST", "/api/link", { server });
}

/** On the primary device: approves a new device's link URI. */
export function approveLink(uri: string): Promise<void> {
  return request("POST", "/api/link/approve", { uri });
}
