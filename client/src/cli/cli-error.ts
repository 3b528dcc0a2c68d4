import { ApiError, GroupError, InvalidLinkUriError, UntrustedIdentityError } from "../index.js";

/** Why a command failed, as scripts see it in `{"type":"error","code":...}`. */
export type CliErrorCode =
  | "invalid_argument"
  | "insecure_http"
  | "not_registered"
  | "already_registered"
  | "unknown_user"
  | "unknown_contact"
  | "unreachable"
  | "untrusted_identity"
  | "safety_number_mismatch"
  | "unknown_group"
  | "ambiguous_group"
  | "group_refused"
  | "unknown_message"
  | "not_primary"
  | "cancelled"
  | "server_error"
  | "internal";

/** A failure the CLI explains to its user; the process exits 1. */
export class CliError extends Error {
  override name = "CliError";

  constructor(
    readonly code: CliErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What an error message may name: the homeserver, and people by username rather than account id. */
export interface ErrorContext {
  server?: string;
  nameOf?: (uuid: string) => string;
}

function isUnreachable(error: unknown): boolean {
  // fetch() fails with a TypeError whose cause is the socket error; socket.io reports a TransportError.
  const cause = (error as { cause?: { code?: unknown } }).cause;
  if (error instanceof TypeError && cause && typeof cause.code === "string") return true;
  return (error as { type?: unknown }).type === "TransportError";
}

/** The homeserver's refusals, in words. */
function describeApiError(error: ApiError, server: string): string {
  switch (error.code) {
    case "username_taken":
      return `that username is taken on ${server}`;
    case "invite_required":
      return `${server} only registers people with an invite: pass --invite <token>`;
    case "invalid_invite":
      return `${server} refused the invite token (wrong, used up or expired)`;
    case "registration_closed":
      return `${server} does not accept new registrations`;
    case "unauthorized":
      return `${server} does not recognise this device (was it unlinked, or the account removed?)`;
    case "link_not_found":
      return `${server} does not know that link code, or it was used already: run zimchat-chat link again on the new device`;
    case "link_expired":
      return `the link code expired before it was approved: run zimchat-chat link again on the new device`;
    case "link_already_confirmed":
      return "that link code has been approved already";
    case "too_many_devices":
      return `the account has as many devices as ${server} allows: unlink one first (zimchat-chat devices, zimchat-chat unlink <id>)`;
    case "content_too_large":
      return `the file is larger than ${server} accepts`;
    case "quota_exceeded":
      return `your attachment storage on ${server} is full`;
    case "rate_limited": {
      const ms = error.retryAfterMs();
      return `${server} is rate limiting this device${ms === undefined ? "" : `: try again in ${Math.ceil(ms / 1000)} s`}`;
    }
    default:
      return `${server} answered ${error.status} ${error.code}: ${error.body.message}`;
  }
}

/** Turns anything thrown into a {@link CliError} with a message for people. */
export function toCliError(error: unknown, context: ErrorContext = {}): CliError {
  if (error instanceof CliError) return error;
  const server = context.server ?? "the homeserver";
  if (error instanceof UntrustedIdentityError) {
    const name = context.nameOf?.(error.uuid) ?? error.uuid;
    return new CliError(
      "untrusted_identity",
      `${name}'s safety number has changed since you verified it, so sending is blocked. ` +
        `Compare safety numbers again (zimchat-chat safety-number ${name}) and run zimchat-chat verify ${name} <number>, or run zimchat-chat accept ${name}.`,
      { cause: error },
    );
  }
  if (error instanceof ApiError) return new CliError("server_error", describeApiError(error, server), { cause: error });
  if (error instanceof GroupError) return new CliError("group_refused", error.message, { cause: error });
  if (error instanceof InvalidLinkUriError) {
    return new CliError("invalid_argument", `${error.message}: pass the zimchat-link:?… URI that zimchat-chat link shows on the new device, in quotes`, { cause: error });
  }
  // The socket's refusal of this device's credentials (an unlinked device, a removed account).
  if ((error as { data?: { code?: unknown } }).data?.code === "unauthorized") {
    return new CliError("server_error", `${server} does not recognise this device (was it unlinked, or the account removed?)`, { cause: error });
  }
  if (isUnreachable(error)) return new CliError("unreachable", `cannot reach ${server}`, { cause: error });
  return new CliError("internal", error instanceof Error ? error.message : String(error), { cause: error });
}
