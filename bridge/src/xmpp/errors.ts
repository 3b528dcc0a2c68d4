/** The XMPP adapter's failures, one class per kind. Messages name rooms and conditions, never message text. */

/** The component connection is down (or dropped before the server confirmed); the core retries after `connected`. */
export class XmppDisconnectedError extends Error {
  override readonly name = "XmppDisconnectedError";
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`XMPP is not connected: ${reason}`, options);
  }
}

/** A target that is not a room this bridge may use, or that it has not joined. */
export class XmppTargetError extends Error {
  override readonly name = "XmppTargetError";
  constructor(
    readonly target: string,
    readonly problem: "invalid" | "not-joined",
  ) {
    super(
      problem === "invalid"
        ? `"${target}" is not an XMPP room this bridge may join`
        : `the XMPP room ${target} has not been joined`,
    );
  }
}

/** The MUC refused an occupant's join (`condition` is the stanza error, e.g. `forbidden`, `item-not-found`). */
export class XmppJoinError extends Error {
  override readonly name = "XmppJoinError";
  constructor(
    readonly room: string,
    readonly condition: string,
  ) {
    super(`joining the XMPP room ${room} failed: ${condition}`);
  }
}

/** The server bounced messages of a batch (e.g. `not-acceptable` when a puppet was no longer an occupant). */
export class XmppDeliveryError extends Error {
  override readonly name = "XmppDeliveryError";
  constructor(
    readonly room: string,
    readonly bounced: number,
    readonly condition: string,
  ) {
    super(`the XMPP room ${room} refused ${bounced} message(s): ${condition}`);
  }
}

/** The server did not answer in time. */
export class XmppTimeoutError extends Error {
  override readonly name = "XmppTimeoutError";
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`XMPP: no answer to ${what} within ${timeoutMs} ms`);
  }
}
