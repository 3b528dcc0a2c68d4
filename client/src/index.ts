/**
 * @zimchat/client: the end-to-end encrypted ZimChat client SDK on libsignal.
 * @packageDocumentation
 */

// The client
export {
  ZimClient,
  type BridgesChangedEvent,
  type DeviceListChangedEvent,
  type GroupUpdatedEvent,
  type LinkOptions,
  type MessageEvent,
  type RegisterOptions,
  type RemoteDeliveryFailedEvent,
  type ServerBindingRefusedEvent,
  type ZimClientEvents,
  type ZimClientOptions,
} from "./zim-client.js";
export {
  ApiError,
  apiError,
  BadDeviceKeysError,
  DecryptionFailureReason,
  FederationUnavailableError,
  GroupError,
  MailboxFullError,
  SealedSendingPausedError,
  ServerBindingError,
  TrustRootMismatchError,
  UntrustedIdentityError,
} from "./errors.js";
export { checkServerUrl, InsecureServerUrlError, isLoopbackHost } from "./server-url.js";
export type { IdentityChangedEvent } from "./identity-changes.js";
export type { SenderName } from "./names.js";
export { formatAddress, isQualifiedAddress, parseAddress, type Address } from "./federation.js";
export type { SendResult } from "./outbox.js";
export { HttpApi, type DeviceCredentials } from "./http-api.js";

// Trust and safety numbers
export { trustOnFirstUse, type TrustPolicy } from "./trust.js";
export { matchesSafetyNumber, safetyNumber, type SafetyNumber } from "./safety-number.js";
export {
  KeyTransparencyChecker,
  keyTransparencyPath,
  type KeyTransparencyFailure,
  type KeyTransparencyFailureReason,
  type KeyTransparencyOptions,
} from "./key-transparency.js";

// Storage
export type {
  DeviceStore,
  KnownIdentity,
  LocalDevice,
  PreKeyKind,
  SerializableRecord,
  StoredMessage,
  StoredPreKey,
} from "./store/device-store.js";
export { MemoryDeviceStore } from "./store/memory-store.js";
export { SqliteDeviceStore } from "./store/sqlite-store.js";

// Attachments
export {
  AttachmentError,
  AttachmentFailureReason,
  attachmentOverheadBytes,
  attachmentPointerSchema,
  blobSize,
  decryptAttachmentBytes,
  downloadAttachment,
  encryptAttachment,
  encryptAttachmentBytes,
  paddedSize,
  uploadAttachment,
  type AttachmentEncryption,
  type AttachmentInput,
  type AttachmentPointer,
  type EncryptionResult,
  type StoredAttachmentPointer,
  type UploadOptions,
} from "./attachments.js";

// Devices, sealed sender, groups
export { InvalidLinkUriError, linkUri, parseLinkUri, type LinkRequest } from "./linking.js";
export { trustRootFingerprint } from "./sealed.js";
export { groupConversation } from "./groups.js";
export {
  bridgeBanner,
  bridgeNetworkLabels,
  bridgeRemovedNotice,
  diffBridges,
  type BridgeInfo,
  type BridgeLike,
} from "./bridges.js";

// Content and keys
export {
  contentSchema,
  decodeContent,
  encodeContent,
  groupBridgeSchema,
  groupStateSchema,
  maxGroupBridges,
  type Content,
  type GroupBridge,
  type GroupState,
} from "./content.js";
export { defaultKeyPolicy, type KeyPolicy } from "./keys.js";
export { defaultSendRetryPolicy, type SendRetryPolicy } from "./send-retry.js";

// The local web client (zimchat-chat web): the daemon, and the contract its browser UI codes against
export {
  maxWebJsonBytes,
  maxWebUploadBytes,
  webMessageLimits,
  webSessionCookie,
  type WebAttachment,
  type WebConversation,
  type WebConversationKind,
  type WebCreateGroupRequest,
  type WebCreateGroupResponse,
  type WebError,
  type WebEvent,
  type WebFileResponse,
  type WebGroup,
  type WebGroupMember,
  type WebGroupMembersRequest,
  type WebLinkCode,
  type WebLinkRequest,
  type WebApproveLinkRequest,
  type WebMe,
  type WebMessage,
  type WebMessageStatus,
  type WebRegisterRequest,
  type WebSafetyNumber,
  type WebSendRequest,
  type WebSendResponse,
  type WebSessionRequest,
  type WebVerifyRequest,
} from "./web/api.js";
export { startWebDaemon, type WebDaemon, type WebDaemonOptions } from "./web/daemon.js";
