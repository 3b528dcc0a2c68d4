/**
 * @zimchat/bridge: relay bots that connect ZimChat groups to IRC channels and
 * XMPP rooms. A bridge is an end-to-end encrypted bot device: it decrypts
 * what it relays, so it relays only in groups whose admins recorded it in
 * the group state, which every member's client shows.
 * @packageDocumentation
 */
export * from "./network.js";
export { Bridge, bridgeDescription, type BridgeCounters, type BridgeOptions, type BridgeStatus } from "./bridge.js";
export { BridgeStore, BridgeStoreMissingError, bridgeStoreFileName, type Mapping } from "./store.js";
export { BridgeConfigFileError, bridgeConfigSchema, loadBridgeConfig, secretEnv, type LoadedConfig } from "./config.js";
export { createBridge, type CreateBridgeOptions } from "./create.js";
export { FilePublisher, filesConfigSchema, safeFileName, type FilesConfig, type Publication } from "./files.js";
export { createIrcAdapter, ircLines, puppetNick } from "./irc/adapter.js";
export { ircConfigSchema, type IrcConfig, type IrcConfigInput } from "./irc/config.js";

// XMPP: a component (XEP-0114) with one puppet occupant per ZimChat author.
export { createXmppAdapter } from "./xmpp/adapter.js";
export { xmppConfigSchema, type XmppConfig, type XmppConfigInput } from "./xmpp/config.js";
export {
  XmppDeliveryError,
  XmppDisconnectedError,
  XmppJoinError,
  XmppTargetError,
  XmppTimeoutError,
} from "./xmpp/errors.js";
