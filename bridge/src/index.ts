/**
 * @zimchat/bridge: relay bots that connect ZimChat groups to IRC channels and
 * XMPP rooms. A bridge is an end-to-end encrypted bot device: it decrypts
 * what it relays, so it relays only in groups whose admins recorded it in
 * the group state, which every member's client shows.
 * @packageDocumentation
 */
export * from "./network.js";

// XMPP: a component (XEP-0114) with one puppet occupant per ZimChat author.
export { createXmppAdapter } from "./xmpp/adapter.js";
export { xmppConfigSchema, type XmppConfig } from "./xmpp/config.js";
export {
  XmppDeliveryError,
  XmppDisconnectedError,
  XmppJoinError,
  XmppTargetError,
  XmppTimeoutError,
} from "./xmpp/errors.js";
