import type { ErrorBody } from "@zimchat/protocol";

/** A refusal from the homeserver, with its HTTP status and machine-readable body. */
export class ApiError extends Error {
  override name = "ApiError";

  constructor(
    readonly status: number,
    readonly body: ErrorBody,
    readonly retryAfterSeconds?: number,
  ) {
    super(`${status} ${body.code}: ${body.message}`);
  }

  get code(): ErrorBody["code"] {
    return this.body.code;
  }

  isRateLimited(): boolean {
    return this.status === 429;
  }

  /** How long to wait before retrying a rate-limited request, in ms. */
  retryAfterMs(): number | undefined {
    const seconds = this.retryAfterSeconds ?? this.body.retryAfterSeconds;
    return seconds === undefined ? undefined : seconds * 1000;
  }
}

/**
 * A send refused because a recipient's mailbox on the server is full
 * (507 `mailbox_full`): the recipient has not fetched its queued messages
 * for a long time, or someone filled it. Nothing was stored; the app can say
 * "X's inbox is full, try again later" and retry after {@link retryAfterMs}.
 * For a group send, `recipients` names the full mailboxes.
 */
export class MailboxFullError extends ApiError {
  override name = "MailboxFullError";

  /** The recipient accounts whose mailbox is full (a 1:1 send: empty, it is the one recipient). */
  get recipients(): string[] {
    return (this.body.recipients ?? []).map((r) => r.uuid);
  }
}

/** The typed error for a homeserver refusal: {@link MailboxFullError} for `mailbox_full`, else {@link ApiError}. */
export function apiError(status: number, body: ErrorBody, retryAfterSeconds?: number): ApiError {
  return body.code === "mailbox_full"
    ? new MailboxFullError(status, body, retryAfterSeconds)
    : new ApiError(status, body, retryAfterSeconds);
}

/**
 * Sending to a contact whose identity key changed after it was verified:
 * refused until the user verifies the new safety number or accepts the change.
 */
export class UntrustedIdentityError extends Error {
  override name = "UntrustedIdentityError";

  constructor(readonly uuid: string) {
    super(`the safety number of ${uuid} has changed since it was verified; verify it again or accept the change`);
  }
}

/** Why a received envelope could not be decrypted (the `decryptionFailed` event). */
export enum DecryptionFailureReason {
  /** No session with the sender, and the message is not a PreKey message. */
  NoSession = "no_session",
  /** The message used a one-time or signed pre-key this device no longer has. */
  MissingPreKey = "missing_pre_key",
  /** libsignal refused the sender's identity key. */
  UntrustedIdentity = "untrusted_identity",
  /** The message was already decrypted once (its message key is gone). */
  Duplicate = "duplicate",
  /** The ciphertext failed authentication or could not be parsed. */
  InvalidMessage = "invalid_message",
  /** The decrypted content is not a ZimChat content structure. */
  InvalidContent = "invalid_content",
  /** The envelope names no sender and is not a sealed-sender message. */
  UnknownSender = "unknown_sender",
  /**
   * A sealed message's sender certificate is expired, not signed by the pinned trust root, or names a key that is not
   * the sender's.
   */
  InvalidCertificate = "invalid_certificate",
  /**
   * A group message or change from someone who is not a member (or not an admin) of that group, or for an unknown
   * group.
   */
  NotAGroupMember = "not_a_group_member",
  /** A group message whose sender key this device never received. */
  NoSenderKey = "no_sender_key",
  /**
   * A sealed message whose sender certificate names a key that is not the
   * identity key this device knew for that sender before the message: a
   * certificate the server could have minted. Refused; the sender's key is
   * left as it was.
   */
  CertificateKeyMismatch = "certificate_key_mismatch",
  /**
   * The envelope says its sender belongs to another server than the one this
   * device bound that account to (a server claiming another server's user,
   * or a local account arriving as remote): refused before decryption, and
   * reported as `serverBindingRefused` too. See {@link ServerBindingError}.
   */
  ServerMismatch = "server_mismatch",
}

/**
 * A server presented a different trust root than the one this device
 * pinned for it: the homeserver (`server` absent) or another server
 * (federation: `server` names it).
 */
export class TrustRootMismatchError extends Error {
  override name = "TrustRootMismatchError";

  constructor(
    readonly pinned: string,
    readonly presented: string,
    readonly server?: string,
  ) {
    super(
      `the ${server === undefined ? "server's" : `server ${server}'s`} trust root changed (pinned ${pinned}, presented ${presented}): sealed sender is off until this is resolved`,
    );
  }
}

/**
 * A contact's device offered keys its account identity key did not sign (a
 * signed pre-key or Kyber pre-key whose signature does not verify): the
 * server, or whoever holds its disk, may be tampering with that device's
 * keys. Nothing is sent to the contact while the device lists such keys;
 * the `badDeviceKeys` event says the same.
 */
export class BadDeviceKeysError extends Error {
  override name = "BadDeviceKeysError";

  constructor(
    readonly uuid: string,
    readonly deviceId: number,
    readonly key: "signed_pre_key" | "kyber_pre_key",
  ) {
    super(
      `device ${deviceId} of ${uuid} offered a ${key === "signed_pre_key" ? "signed pre-key" : "Kyber pre-key"} that its identity key did not sign`,
    );
  }
}

/**
 * A sealed send was held because the server's trust root is no longer the
 * one this device pinned (`trustRootChanged`): sending it authenticated
 * would tell the server who sends. Call `acceptTrustRoot` (after checking
 * the new fingerprint with the server's admin) or `allowUnsealedSending`.
 * With `server` set, the trust root of that other server changed (sealed
 * sends to its users are held; pass `server` to those calls).
 */
export class SealedSendingPausedError extends TrustRootMismatchError {
  override name = "SealedSendingPausedError";
}

/** A group operation that this device may not do (not a member, not an admin, unknown group). */
export class GroupError extends Error {
  override name = "GroupError";
}

/** A decryption failure with its reason (the inbox reports it as `decryptionFailed`). */
export function decryptionFailure(reason: DecryptionFailureReason, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? {} : { cause }), { reason });
}

/** How a server is named in messages: `this homeserver` for the device's own. */
const serverLabel = (server: string | null): string => (server === null ? "this homeserver" : server);

/**
 * An account id claimed for a second server. This device binds each
 * account to exactly one server (the first one it learned it from: a
 * look-up, or its first envelope) and refuses any other claim, so a server
 * cannot pass off its own account as another server's user, or intercept
 * a remote contact by answering for their account id.
 */
export class ServerBindingError extends Error {
  override name = "ServerBindingError";

  /**
   * @param boundTo the server the account is bound to (null: this device's homeserver)
   * @param claimed the server now claiming it (null: this device's homeserver)
   */
  constructor(
    readonly uuid: string,
    readonly boundTo: string | null,
    readonly claimed: string | null,
  ) {
    super(
      `account ${uuid} belongs to ${serverLabel(boundTo)}, but ${serverLabel(claimed)} claims it: refused (a server may be impersonating a user of another server)`,
    );
  }
}

/**
 * A `name@server` address this device cannot reach: its homeserver does not
 * federate (its server document answers 404), or the address is not valid.
 */
export class FederationUnavailableError extends Error {
  override name = "FederationUnavailableError";

  constructor(
    readonly address: string,
    message: string,
  ) {
    super(message);
  }
}
