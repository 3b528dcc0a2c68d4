import {
  ApiError,
  FederationUnavailableError,
  GroupError,
  InvalidLinkUriError,
  ServerBindingError,
  UntrustedIdentityError,
} from "../index.js";

/** Why a command failed, as scripts see it in `{"type":"error","code":...}`. */
export type CliErrorCode =
  | "invalid_argument"
  | "insecure_http"
  | "not_registered"
  | "already_registered"
  | "unknown_user"
  | "federation_unavailable"
  | "server_binding_refused"
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

/**
 * The socket-level failure under a failed fetch() or Socket.IO connection: its code (ECONNREFUSED, ENOTFOUND, a TLS
 * code) and message.
 */
function networkCause(error: unknown): { code?: string; message: string } | null {
  // fetch() fails with a TypeError whose cause is the socket error; socket.io reports a TransportError whose
  // description is the WebSocket's ErrorEvent.
  const e = error as { cause?: unknown; type?: unknown; description?: { error?: unknown; message?: unknown } };
  let cause: unknown;
  if (error instanceof TypeError && error.message === "fetch failed" && e.cause instanceof Error) cause = e.cause;
  else if (e.type === "TransportError") cause = e.description?.error ?? e.description ?? {};
  else return null;
  // undici wraps some failures once more (a connect timeout); a refused dual-stack connect is an AggregateError with
  // the code.
  for (let depth = 0; depth < 3 && cause; depth++) {
    const c = cause as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof c.code === "string")
      return { code: c.code, message: typeof c.message === "string" ? c.message : c.code };
    if (!c.cause) return { message: typeof c.message === "string" ? c.message : String(cause) };
    cause = c.cause;
  }
  return { message: "unknown network error" };
}

const tlsCode = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|EPROTO$)/;

/** Why `server` could not be reached, in words, with what to try. */
function describeUnreachable(cause: { code?: string; message: string }, server: string | undefined): string {
  let host = "the homeserver";
  let where = "the homeserver's address";
  if (server) {
    try {
      const url = new URL(server);
      host = url.hostname;
      where = `${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")}`;
    } catch {
      // Not a URL: name it as given.
    }
  }
  const reach = `cannot reach ${server ?? "the homeserver"}`;
  const code = cause.code;
  // OpenSSL's messages end in a newline and a source location.
  const message = cause.message.split("\n")[0]!.trim();
  switch (code) {
    case "ECONNREFUSED":
      return `${reach}: connection refused by ${where} (nothing listens there). Is the homeserver running, and are the host and port right?`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_NONAME":
      return `${reach}: the DNS lookup of ${host} failed (${code}). Check the host name in --server, and this machine's network and DNS.`;
    case "ETIMEDOUT":
    case "UND_ERR_CONNECT_TIMEOUT":
      return `${reach}: connecting to ${where} timed out. Is the host up, and does a firewall let that port through?`;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
    case "ENETDOWN":
      return `${reach}: no route to ${where} (${code}). Check this machine's network connection.`;
    case "ECONNRESET":
    case "UND_ERR_SOCKET":
    case "EPIPE":
      return `${reach}: ${where} closed the connection (${code}). Is that a ZimChat homeserver, and is http:// or https:// right for it?`;
    default:
      break;
  }
  if (code && tlsCode.test(code)) {
    if (/wrong version number|packet length too long|http request/i.test(message)) {
      return `${reach}: the TLS handshake failed: ${where} does not seem to speak https (it answered in plain text). Try http://, or the port where the homeserver (or its proxy) serves TLS.`;
    }
    return (
      `${reach}: the TLS handshake with ${where} failed (${code}: ${message}). Check that the homeserver's certificate is valid for ${host} and not expired; ` +
      `a certificate from a private CA is trusted with NODE_EXTRA_CA_CERTS=<ca.pem>.`
    );
  }
  if (message === "bad port") {
    return `${reach}: Node's fetch refuses to connect to port ${where.split(":").pop()} (a port reserved for another protocol, blocked as browsers block it). Run the homeserver on another port, like 8080.`;
  }
  return `${reach}: ${code ? `${code}: ` : ""}${message}`;
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
    case "peer_unavailable":
      return `${server} could not reach the other homeserver: try again later`;
    case "body_too_large":
      // Also a file on another homeserver larger than this one's own attachment limit: it does not pass it on.
      return `that is larger than ${server} accepts (for a file: also one fetched from another homeserver)`;
    case "peer_not_allowed":
      return `${server} does not federate with that homeserver (it is not on its list of allowed peers, or blocked)`;
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
  if (error instanceof FederationUnavailableError)
    return new CliError("federation_unavailable", error.message, { cause: error });
  if (error instanceof ServerBindingError) {
    const name = context.nameOf?.(error.uuid) ?? error.uuid;
    return new CliError(
      "server_binding_refused",
      `refused: ${error.claimed ?? "your homeserver"} claims the account of ${name}, which belongs to ${error.boundTo ?? "your homeserver"} (a server may be impersonating a user)`,
      { cause: error },
    );
  }
  if (error instanceof InvalidLinkUriError) {
    return new CliError(
      "invalid_argument",
      `${error.message}: pass the zimchat-link:?… URI that zimchat-chat link shows on the new device, in quotes`,
      { cause: error },
    );
  }
  // The socket's refusal of this device's credentials (an unlinked device, a removed account).
  if ((error as { data?: { code?: unknown } }).data?.code === "unauthorized") {
    return new CliError(
      "server_error",
      `${server} does not recognise this device (was it unlinked, or the account removed?)`,
      { cause: error },
    );
  }
  const network = networkCause(error);
  if (network) return new CliError("unreachable", describeUnreachable(network, context.server), { cause: error });
  return new CliError("internal", error instanceof Error ? error.message : String(error), { cause: error });
}
