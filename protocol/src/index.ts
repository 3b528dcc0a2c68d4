/**
 * @zimchat/protocol: the wire contract between ZimChat clients and homeservers.
 * @packageDocumentation
 */

// Limits and primitives
export { limits, usernamePattern } from "./limits.js";
export {
  base64Bytes,
  base64DecodedLength,
  base64Length,
  base64LengthText,
  deviceIdParamSchema,
  deviceIdSchema,
  ecPublicKeySchema,
  exactBase64Pattern,
  keyIdSchema,
  kyberPublicKeySchema,
  passwordSchema,
  registrationIdSchema,
  signatureSchema,
  usernameSchema,
  uuidSchema,
} from "./primitives.js";

// Errors
export { errorBodySchema, errorCodes, errorStatus, issueSchema, type ErrorBody, type ErrorCode } from "./errors.js";

// Accounts
export {
  registerRequestSchema,
  registerResponseSchema,
  resetIdentityRequestSchema,
  type ResetIdentityRequest,
  usernameLookupResponseSchema,
  whoAmIResponseSchema,
  type RegisterRequest,
  type RegisterResponse,
  type UsernameLookupResponse,
  type WhoAmIResponse,
} from "./accounts.js";

// Keys
export {
  deviceBundleSchema,
  ecPreKeySchema,
  keyCountResponseSchema,
  preKeyBundleResponseSchema,
  signedEcPreKeySchema,
  signedKyberPreKeySchema,
  uploadKeysRequestSchema,
  type DeviceBundle,
  type EcPreKey,
  type KeyCountResponse,
  type PreKeyBundleResponse,
  type SignedEcPreKey,
  type SignedKyberPreKey,
  type UploadKeysRequest,
} from "./keys.js";

// Messages
export {
  ackRequestSchema,
  ackResponseSchema,
  envelopeSchema,
  envelopeTypeName,
  envelopeTypes,
  envelopeTypeSchema,
  fetchMessagesResponseSchema,
  outgoingMessageSchema,
  sendMessagesRequestSchema,
  sendMessagesResponseSchema,
  socketSendRequestSchema,
  type AckRequest,
  type AckResponse,
  type Envelope,
  type EnvelopeType,
  type FetchMessagesResponse,
  type OutgoingMessage,
  type SendMessagesRequest,
  type SendMessagesResponse,
  type SocketSendRequest,
} from "./messages.js";

// Health
export { healthResponseSchema, readyResponseSchema, type ReadyResponse } from "./health.js";

// Socket.IO
export type {
  ClientToServerEvents,
  DisconnectReason,
  SealedClientToServerEvents,
  ServerToClientEvents,
  SocketAuth,
  SocketResult,
} from "./socket.js";

// Exhaustive switches
export { missingCase } from "./missing-case.js";

// REST routes and the OpenAPI document
export {
  adminRoutes,
  bodyLimitOf,
  routes,
  streamRoutes,
  type AdminRouteName,
  type RouteAuth,
  type RouteName,
  type RouteSpec,
  type StreamRouteName,
  type StreamRouteSpec,
} from "./routes.js";
export { buildOpenApiDocument, retryAfterHeader, type OpenApiInfo } from "./openapi.js";
export { buildAsyncApiDocument, type AsyncApiInfo } from "./asyncapi.js";
export { toComponentSchema, type JsonSchema } from "./json-schema.js";
export {
  authRateLimits,
  rateLimitEntries,
  rateLimitInfo,
  type RateLimitName,
  type RateLimitSetting,
  type RateLimitSettings,
} from "./rate-limits.js";
export {
  disconnectReasonSchema,
  socketAuthSchema,
  socketNamespaces,
  socketResultSchema,
  type ClientEventSpec,
  type NamespaceSpec,
  type ServerEventSpec,
  type SocketNamespace,
} from "./socket-events.js";

// The admin API
export {
  accountDeviceParamsSchema,
  accountListQuerySchema,
  accountListResponseSchema,
  accountParamsSchema,
  accountRefSchema,
  adminAccountSchema,
  createInviteRequestSchema,
  createInviteResponseSchema,
  federationPeerListSchema,
  federationPeerSchema,
  inviteIdSchema,
  inviteInfoSchema,
  inviteListResponseSchema,
  maxAdminPageSize,
  rotateCertificateResponseSchema,
  serverStatsSchema,
  type AccountListResponse,
  type AdminAccount,
  type CreateInviteRequest,
  type CreateInviteResponse,
  type FederationPeer,
  type FederationPeerList,
  type InviteInfo,
  type RotateCertificateResponse,
  type ServerStats,
} from "./admin.js";

// Devices (linking)
export {
  confirmLinkRequestSchema,
  createLinkResponseSchema,
  deviceInfoSchema,
  deviceListResponseSchema,
  linkCodeSchema,
  linkDeviceRequestSchema,
  linkDeviceResponseSchema,
  linkStatusResponseSchema,
  type ConfirmLinkRequest,
  type CreateLinkResponse,
  type DeviceInfo,
  type DeviceListResponse,
  type LinkDeviceRequest,
  type LinkDeviceResponse,
  type LinkStatusResponse,
} from "./devices.js";

// Attachments
export {
  attachmentIdBytes,
  attachmentIdSchema,
  uploadAttachmentResponseSchema,
  type UploadAttachmentResponse,
} from "./attachments.js";

// Sealed sender
export {
  accessKeyHeader,
  accessKeySchema,
  accountAttributesRequestSchema,
  multiRecipientRequestSchema,
  multiRecipientResponseSchema,
  recipientAccessKeySchema,
  recipientMismatchSchema,
  sealedSocketSendRequestSchema,
  senderCertificateResponseSchema,
  trustRootResponseSchema,
  type AccountAttributesRequest,
  type SealedSocketSendRequest,
  type MultiRecipientRequest,
  type MultiRecipientResponse,
  type RecipientMismatch,
  type SenderCertificateResponse,
  type TrustRootResponse,
} from "./sealed.js";

// Key transparency (the key-transparency plugin's wire format and Merkle math)
export {
  consistencyProofSchema,
  emptyRoot,
  inclusionProofSchema,
  keyLogConsistencyQuerySchema,
  keyLogConsistencyResponseSchema,
  keyLogHeadResponseSchema,
  keyLogInclusionQuerySchema,
  keyLogInclusionResponseSchema,
  keyLogLeafSchema,
  keyTransparencyLimits,
  leafBytes,
  leafHash,
  merkleRoot,
  nodeHash,
  proofHashesSchema,
  signedTreeHeadSchema,
  treeHeadPayload,
  verifyConsistency,
  verifyInclusion,
  type ConsistencyProof,
  type InclusionProof,
  type KeyLogConsistencyResponse,
  type KeyLogHeadResponse,
  type KeyLogInclusionResponse,
  type KeyLogLeaf,
  type SignedTreeHead,
} from "./key-transparency.js";

// Federation
export {
  federatedSendResultSchema,
  federatedSendSchema,
  federationKeySchema,
  federationPublicKeySchema,
  federationTransactionResponseSchema,
  federationTransactionSchema,
  remoteDeliveryFailedSchema,
  remoteDeliveryFailureSchema,
  remoteSendResponseSchema,
  serverDocumentPath,
  serverDocumentSchema,
  serverNameSchema,
  type FederatedSend,
  type FederatedSendResult,
  type FederationKey,
  type FederationTransaction,
  type FederationTransactionResponse,
  type RemoteDeliveryFailed,
  type RemoteDeliveryFailure,
  type RemoteSendResponse,
  type ServerDocument,
} from "./federation.js";
