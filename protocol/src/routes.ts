import { z } from "zod";
import {
  accountDeviceParamsSchema,
  accountListQuerySchema,
  accountListResponseSchema,
  accountParamsSchema,
  createInviteRequestSchema,
  federationPeerListSchema,
  peerParamsSchema,
  createInviteResponseSchema,
  inviteIdSchema,
  inviteListResponseSchema,
  rotateCertificateResponseSchema,
  serverStatsSchema,
} from "./admin.js";
import { attachmentIdSchema, uploadAttachmentResponseSchema } from "./attachments.js";
import {
  resetIdentityRequestSchema,
  registerRequestSchema,
  registerResponseSchema,
  usernameLookupResponseSchema,
  whoAmIResponseSchema,
} from "./accounts.js";
import type { ErrorCode } from "./errors.js";
import { limits } from "./limits.js";
import { base64Length } from "./primitives.js";
import type { RateLimitName } from "./rate-limits.js";
import {
  federationTransactionResponseSchema,
  federationTransactionSchema,
  remoteSendResponseSchema,
  serverDocumentPath,
  serverDocumentSchema,
  serverNameSchema,
} from "./federation.js";
import { healthResponseSchema, readyResponseSchema } from "./health.js";
import { keyCountResponseSchema, preKeyBundleResponseSchema, uploadKeysRequestSchema } from "./keys.js";
import {
  ackRequestSchema,
  ackResponseSchema,
  fetchMessagesResponseSchema,
  sendMessagesRequestSchema,
  sendMessagesResponseSchema,
} from "./messages.js";
import { deviceIdParamSchema, usernameSchema, uuidSchema } from "./primitives.js";
import {
  confirmLinkRequestSchema,
  createLinkResponseSchema,
  deviceListResponseSchema,
  linkCodeSchema,
  linkDeviceRequestSchema,
  linkDeviceResponseSchema,
  linkStatusResponseSchema,
} from "./devices.js";
import {
  accountAttributesRequestSchema,
  multiRecipientRequestSchema,
  multiRecipientResponseSchema,
  senderCertificateResponseSchema,
  trustRootResponseSchema,
} from "./sealed.js";

/**
 * How a route authenticates its caller: not at all, as a device (HTTP
 * Basic), or either as a device or with the recipient's unidentified access
 * key (the `Unidentified-Access-Key` header, sealed sender; a wrong key or an
 * unknown recipient is the same 401), or as the server's admin
 * (`Authorization: Bearer <admin token>`; the admin routes answer 404 when
 * the server has no admin token), or as another homeserver (federation: an
 * RFC 9421 signature by one of its published keys; see docs/federation.md;
 * the federation routes answer 404 while federation is off).
 */
export type RouteAuth = "none" | "device" | "device-or-access-key" | "admin" | "server";

/** One REST route: the server mounts it, the OpenAPI document describes it. */
export interface RouteSpec {
  method: "get" | "put" | "post" | "delete";
  /** Express-style path (`/v1/keys/:uuid/:deviceId`). */
  path: string;
  summary: string;
  auth: RouteAuth;
  params?: z.ZodObject;
  /** The query string's parameters (each a string, or absent). */
  query?: z.ZodObject;
  body?: z.ZodType;
  /**
   * Bytes of the JSON body (413 `body_too_large` above), set from the largest
   * legal body; absent: `limits.defaultMaxBodyBytes`. See {@link bodyLimitOf}.
   */
  maxBodyBytes?: number;
  /** Status and schema of the success answer (no schema: empty body). */
  success: { status: number; schema?: z.ZodType };
  /** The error codes this route can answer with, beyond the common ones. */
  errors: ErrorCode[];
  /**
   * The server's rate limits this route takes from (see `rateLimitInfo`),
   * beyond the failed-authentication limits every authenticated route has.
   */
  rateLimits?: readonly RateLimitName[];
}

/** What a send can be refused with, one recipient or many. */
const sendErrors: readonly ErrorCode[] = [
  "not_found",
  "mismatched_devices",
  "stale_devices",
  "content_too_large",
  "invalid_ciphertext",
  "refused_by_plugin",
  "mailbox_full",
  "idempotency_conflict",
];
/** Room for JSON punctuation, field names and numbers around a route's base64 payload. */
const jsonSlack = 1024;
/** One signed pre-key in JSON: key id, public key and signature, with names and punctuation. */
const signedKeyJson = (keyBytes: number): number => base64Length(keyBytes) + base64Length(limits.signatureBytes) + 64;
/** The largest legal key upload: 100 EC and 100 Kyber one-time keys, a signed pre-key and a last-resort Kyber key. */
const uploadKeysBodyBytes =
  limits.maxKeysPerUpload * (base64Length(limits.ecPublicKeyBytes) + 40) +
  limits.maxKeysPerUpload * (signedKeyJson(limits.kyberPublicKeyBytes) + 8) +
  signedKeyJson(limits.ecPublicKeyBytes) +
  signedKeyJson(limits.kyberPublicKeyBytes) +
  jsonSlack;
/** The largest legal multi-recipient send: the message in base64 and one access key per recipient. */
const multiRecipientBodyBytes =
  base64Length(limits.maxMultiRecipientBytes) +
  limits.maxGroupRecipients * (36 + base64Length(limits.accessKeyBytes) + 32) +
  jsonSlack;

/** A route's JSON body limit in bytes: its own `maxBodyBytes`, or the small default. */
export function bodyLimitOf(route: Pick<RouteSpec, "maxBodyBytes">): number {
  return route.maxBodyBytes ?? limits.defaultMaxBodyBytes;
}

const deviceSelectorSchema = z.union([z.literal("*"), deviceIdParamSchema]);

/**
 * Every REST route of the homeserver. The server builds its routers from this
 * table and `/openapi.json` is generated from it, so the two cannot drift.
 */
export const routes = {
  health: {
    method: "get",
    path: "/healthz",
    summary: "The process is up",
    auth: "none",
    success: { status: 200, schema: healthResponseSchema },
    errors: [],
  },
  ready: {
    method: "get",
    path: "/readyz",
    summary: "The database answers and every migration is applied (503 otherwise)",
    auth: "none",
    success: { status: 200, schema: readyResponseSchema },
    errors: ["unavailable"],
  },
  openapi: {
    method: "get",
    path: "/openapi.json",
    summary: "This document",
    auth: "none",
    success: { status: 200, schema: z.looseObject({ openapi: z.string() }) },
    errors: [],
  },
  asyncapi: {
    method: "get",
    path: "/asyncapi.json",
    summary: "The AsyncAPI 3.0 document of the Socket.IO events (namespaces, payloads, acknowledgements, limits)",
    auth: "none",
    success: { status: 200, schema: z.looseObject({ asyncapi: z.string() }) },
    errors: [],
  },
  register: {
    method: "post",
    path: "/v1/accounts",
    summary: "Create an account and its first device",
    auth: "none",
    body: registerRequestSchema,
    success: { status: 201, schema: registerResponseSchema },
    errors: [
      "registration_closed",
      "invite_required",
      "invalid_invite",
      "username_taken",
      "invalid_key",
      "invalid_signature",
      "refused_by_plugin",
      "unavailable",
    ],
    rateLimits: ["register"],
  },
  whoAmI: {
    method: "get",
    path: "/v1/accounts/whoami",
    summary: "The authenticated account and device",
    auth: "device",
    success: { status: 200, schema: whoAmIResponseSchema },
    errors: [],
  },
  resetIdentity: {
    method: "put",
    path: "/v1/accounts/identity",
    summary:
      "Replace the account's identity key from its primary device (a reinstall); removes other devices, keys and queues",
    auth: "device",
    body: resetIdentityRequestSchema,
    success: { status: 204 },
    errors: ["forbidden", "invalid_key", "invalid_signature"],
  },
  setAttributes: {
    method: "put",
    path: "/v1/accounts/attributes",
    summary: "Set the account's unidentified access key and whether anyone may send it sealed messages",
    auth: "device",
    body: accountAttributesRequestSchema,
    success: { status: 204 },
    errors: [],
  },
  createLink: {
    method: "post",
    path: "/v1/devices/links",
    summary: "A new device asks for a linking code (10 minutes, single use; rate limited)",
    auth: "none",
    success: { status: 201, schema: createLinkResponseSchema },
    errors: [],
    rateLimits: ["linkCode"],
  },
  confirmLink: {
    method: "put",
    path: "/v1/devices/links/:code",
    summary: "The primary device confirms a linking code with the sealed provisioning message",
    auth: "device",
    params: z.strictObject({ code: linkCodeSchema }),
    body: confirmLinkRequestSchema,
    maxBodyBytes: base64Length(limits.maxProvisioningMessageBytes) + jsonSlack,
    success: { status: 204 },
    errors: ["forbidden", "link_not_found", "link_expired", "link_already_confirmed"],
  },
  linkStatus: {
    method: "get",
    path: "/v1/devices/links/:code",
    summary: "The new device polls for its provisioning message",
    auth: "none",
    params: z.strictObject({ code: linkCodeSchema }),
    success: { status: 200, schema: linkStatusResponseSchema },
    errors: ["link_not_found", "link_expired"],
  },
  linkDevice: {
    method: "post",
    path: "/v1/devices",
    summary:
      "Register a linked device with a confirmed linking code; keys must be signed by the account's identity key",
    auth: "none",
    body: linkDeviceRequestSchema,
    success: { status: 201, schema: linkDeviceResponseSchema },
    errors: [
      "link_not_found",
      "link_expired",
      "link_not_confirmed",
      "too_many_devices",
      "invalid_key",
      "invalid_signature",
    ],
  },
  listDevices: {
    method: "get",
    path: "/v1/devices",
    summary: "The authenticated account's devices (dates at day granularity)",
    auth: "device",
    success: { status: 200, schema: deviceListResponseSchema },
    errors: [],
  },
  removeDevice: {
    method: "delete",
    path: "/v1/devices/:deviceId",
    summary:
      "Unlink a device (the primary may remove any other; a device may remove itself); deletes its keys and queue",
    auth: "device",
    params: z.strictObject({ deviceId: deviceIdParamSchema }),
    success: { status: 204 },
    errors: ["forbidden", "not_found"],
  },
  trustRoot: {
    method: "get",
    path: "/v1/certificate/trust-root",
    summary:
      "The server's trust root public key, which signs its sender certificates (pin it; compare its fingerprint out of band)",
    auth: "none",
    success: { status: 200, schema: trustRootResponseSchema },
    errors: [],
  },
  serverDocument: {
    method: "get",
    path: serverDocumentPath,
    summary:
      "Federation: this server's signed document (its name, federation signing keys and trust root); 404 while federation is off",
    auth: "none",
    success: { status: 200, schema: serverDocumentSchema },
    errors: ["not_found"],
  },
  federationLookupUsername: {
    method: "get",
    path: "/federation/v1/accounts/username/:username",
    summary:
      "Federation: the account id of a username on this server, asked by another homeserver for its user (signed request; rate limited per origin server)",
    auth: "server",
    params: z.strictObject({ username: usernameSchema }),
    success: { status: 200, schema: usernameLookupResponseSchema },
    errors: ["not_found"],
    rateLimits: ["federationUsernameLookup"],
  },
  senderCertificate: {
    method: "get",
    path: "/v1/certificate/delivery",
    summary: "A short-lived sender certificate for the authenticated device (sealed sender)",
    auth: "device",
    success: { status: 200, schema: senderCertificateResponseSchema },
    errors: [],
  },
  lookupUsername: {
    method: "get",
    path: "/v1/accounts/username/:username",
    summary: "The account id of a username on this server (rate limited)",
    auth: "device",
    params: z.strictObject({ username: usernameSchema }),
    success: { status: 200, schema: usernameLookupResponseSchema },
    errors: ["not_found"],
    rateLimits: ["usernameLookup"],
  },
  uploadKeys: {
    method: "put",
    path: "/v1/keys",
    summary: "Replace the signed pre-key or Kyber last-resort key and add one-time pre-keys",
    auth: "device",
    body: uploadKeysRequestSchema,
    maxBodyBytes: uploadKeysBodyBytes,
    success: { status: 204 },
    errors: ["invalid_key", "invalid_signature"],
  },
  keyCount: {
    method: "get",
    path: "/v1/keys/count",
    summary: "The authenticated device's remaining one-time EC and Kyber pre-keys",
    auth: "device",
    success: { status: 200, schema: keyCountResponseSchema },
    errors: [],
  },
  preKeyBundle: {
    method: "get",
    path: "/v1/keys/:uuid/:deviceId",
    summary: "Pre-key bundles for one device or all devices (`*`) of an account; claims one-time keys",
    auth: "device",
    params: z.strictObject({ uuid: uuidSchema, deviceId: deviceSelectorSchema }),
    success: { status: 200, schema: preKeyBundleResponseSchema },
    errors: ["not_found"],
    rateLimits: ["preKeyBundle", "preKeyClaimsPerRequester", "preKeyClaimsPerTarget"],
  },
  federationPreKeyBundle: {
    method: "get",
    path: "/federation/v1/keys/:uuid/:deviceId",
    summary:
      "Federation: pre-key bundles of a local account's device (or all, `*`) for a peer's user; claims one-time keys within the peer's own budget",
    auth: "server",
    params: z.strictObject({ uuid: uuidSchema, deviceId: deviceSelectorSchema }),
    success: { status: 200, schema: preKeyBundleResponseSchema },
    errors: ["not_found"],
    rateLimits: ["federationPreKeyBundle", "federationPreKeyClaims", "preKeyClaimsPerTarget"],
  },
  remoteLookupUsername: {
    method: "get",
    path: "/v1/federation/:server/accounts/username/:username",
    summary:
      "The account id of a username on another server, asked by this server (federation; `name@server` in the clients)",
    auth: "device",
    params: z.strictObject({ server: serverNameSchema, username: usernameSchema }),
    success: { status: 200, schema: usernameLookupResponseSchema },
    errors: ["not_found", "peer_not_allowed", "peer_unavailable", "rate_limited"],
    rateLimits: ["usernameLookup"],
  },
  remoteServerDocument: {
    method: "get",
    path: "/v1/federation/:server/document",
    summary:
      "Another server's signed document as this server fetched and verified it (cached): its signing keys and the trust root that signs its users' sender certificates (federation)",
    auth: "device",
    params: z.strictObject({ server: serverNameSchema }),
    success: { status: 200, schema: serverDocumentSchema },
    errors: ["peer_not_allowed", "peer_unavailable", "rate_limited"],
    rateLimits: ["usernameLookup"],
  },
  remotePreKeyBundle: {
    method: "get",
    path: "/v1/federation/:server/keys/:uuid/:deviceId",
    summary:
      "Pre-key bundles of an account on another server, fetched by this server (federation); the other server claims the one-time keys",
    auth: "device",
    params: z.strictObject({ server: serverNameSchema, uuid: uuidSchema, deviceId: deviceSelectorSchema }),
    success: { status: 200, schema: preKeyBundleResponseSchema },
    errors: ["not_found", "peer_not_allowed", "peer_unavailable", "rate_limited"],
    rateLimits: ["preKeyBundle"],
  },
  federationSend: {
    method: "put",
    path: "/federation/v1/send/:txnId",
    summary:
      "Federation: sends from the origin server's users to accounts here, each checked like a local send and answered on its own; replaying a transaction id stores nothing new",
    auth: "server",
    params: z.strictObject({ txnId: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, "16 to 64 base64url characters") }),
    body: federationTransactionSchema,
    maxBodyBytes: limits.maxFederationTransactionBytes,
    success: { status: 200, schema: federationTransactionResponseSchema },
    errors: ["rate_limited"],
    rateLimits: ["federationSend"],
  },
  remoteSendMessages: {
    method: "put",
    path: "/v1/federation/:server/messages/:uuid",
    summary:
      "Send to an account on another server (federation): the same body and device rules as `PUT /v1/messages/{uuid}`, answered with the other server's answer; when it does not answer in time, an authenticated send is queued (`queued: true`) and a sealed one is refused 502 `peer_unavailable`",
    auth: "device-or-access-key",
    params: z.strictObject({ server: serverNameSchema, uuid: uuidSchema }),
    body: sendMessagesRequestSchema,
    maxBodyBytes: limits.maxBodyBytes,
    success: { status: 200, schema: remoteSendResponseSchema },
    errors: [...sendErrors, "unauthorized", "peer_not_allowed", "peer_unavailable", "outbox_full", "rate_limited"],
    rateLimits: ["send", "sealedSend"],
  },
  sendMultiRecipient: {
    method: "put",
    path: "/v1/messages/multi-recipient",
    summary: "One sealed-sender multi-recipient message, fanned out to every device it names (groups)",
    auth: "device-or-access-key",
    body: multiRecipientRequestSchema,
    maxBodyBytes: multiRecipientBodyBytes,
    success: { status: 200, schema: multiRecipientResponseSchema },
    errors: [...sendErrors],
    rateLimits: ["send", "sealedSend"],
  },
  sendMessages: {
    method: "put",
    path: "/v1/messages/:uuid",
    summary:
      "Send one envelope per current device of the recipient (sealed: with the recipient's access key instead of credentials)",
    auth: "device-or-access-key",
    params: z.strictObject({ uuid: uuidSchema }),
    body: sendMessagesRequestSchema,
    maxBodyBytes: limits.maxBodyBytes,
    success: { status: 200, schema: sendMessagesResponseSchema },
    errors: [...sendErrors],
    rateLimits: ["send", "sealedSend"],
  },
  fetchMessages: {
    method: "get",
    path: "/v1/messages",
    summary: "The oldest queued envelopes of the authenticated device (for clients without a socket)",
    auth: "device",
    success: { status: 200, schema: fetchMessagesResponseSchema },
    errors: [],
  },
  ackMessages: {
    method: "post",
    path: "/v1/messages/ack",
    summary: "Delete delivered envelopes of the authenticated device",
    auth: "device",
    body: ackRequestSchema,
    maxBodyBytes: limits.maxAckIds * 40 + jsonSlack,
    success: { status: 200, schema: ackResponseSchema },
    errors: [],
  },
} as const satisfies Record<string, RouteSpec>;

/**
 * The admin API, under `/admin/v1`: served only when the server has an admin
 * token (404 `not_found` otherwise, as if absent), for `Authorization: Bearer <token>`.
 */
export const adminRoutes = {
  adminCreateInvite: {
    method: "post",
    path: "/admin/v1/invites",
    summary: "Create a registration invite; its token is in this answer only",
    auth: "admin",
    body: createInviteRequestSchema,
    success: { status: 201, schema: createInviteResponseSchema },
    errors: [],
  },
  adminListInvites: {
    method: "get",
    path: "/admin/v1/invites",
    summary: "Every invite, without tokens",
    auth: "admin",
    success: { status: 200, schema: inviteListResponseSchema },
    errors: [],
  },
  adminRevokeInvite: {
    method: "delete",
    path: "/admin/v1/invites/:id",
    summary: "Revoke an invite (404 when there is no unrevoked invite with that id)",
    auth: "admin",
    params: z.strictObject({ id: inviteIdSchema }),
    success: { status: 204 },
    errors: ["not_found"],
  },
  adminListAccounts: {
    method: "get",
    path: "/admin/v1/accounts",
    summary: "Accounts ordered by id, one page at a time (metadata only: no keys, no contacts)",
    auth: "admin",
    query: accountListQuerySchema,
    success: { status: 200, schema: accountListResponseSchema },
    errors: [],
  },
  adminDisableAccount: {
    method: "put",
    path: "/admin/v1/accounts/:account/disabled",
    summary:
      "Disable an account (by id or username): its devices can no longer authenticate (403 `account_disabled`) and " +
      "their connections are closed (`closing`: `disabled`); messages sent to it are still queued until they expire",
    auth: "admin",
    params: accountParamsSchema,
    success: { status: 204 },
    errors: ["not_found"],
  },
  adminEnableAccount: {
    method: "delete",
    path: "/admin/v1/accounts/:account/disabled",
    summary: "Enable a disabled account again",
    auth: "admin",
    params: accountParamsSchema,
    success: { status: 204 },
    errors: ["not_found"],
  },
  adminDeleteAccount: {
    method: "delete",
    path: "/admin/v1/accounts/:account",
    summary:
      "Delete an account: its devices, keys, queued envelopes and attachments (rows and blobs); frees the username and closes its connections",
    auth: "admin",
    params: accountParamsSchema,
    success: { status: 204 },
    errors: ["not_found"],
  },
  adminRemoveDevice: {
    method: "delete",
    path: "/admin/v1/accounts/:account/devices/:deviceId",
    summary:
      "Remove a linked device (not the primary: delete the account instead), with its keys and queue; closes its connection",
    auth: "admin",
    params: accountDeviceParamsSchema,
    success: { status: 204 },
    errors: ["forbidden", "not_found"],
  },
  adminStats: {
    method: "get",
    path: "/admin/v1/stats",
    summary: "Accounts, devices, queued envelopes and connected devices (across every node)",
    auth: "admin",
    success: { status: 200, schema: serverStatsSchema },
    errors: [],
  },
  adminFederationPeers: {
    method: "get",
    path: "/admin/v1/federation/peers",
    summary:
      "Federation: the other servers this one has relayed sends to, blocked or pinned, with their outbox depth, failures in a row, next attempt, whether blocked, whether pinned, and the fingerprint of their identity key",
    auth: "admin",
    success: { status: 200, schema: federationPeerListSchema },
    errors: [],
  },
  adminBlockPeer: {
    method: "put",
    path: "/admin/v1/federation/peers/:server/block",
    summary:
      "Federation: block another server (stored; every node within a minute): its requests get 403 `peer_not_allowed`, and nothing is sent to it (sends queued for it wait, and expire unless it is unblocked)",
    auth: "admin",
    params: peerParamsSchema,
    success: { status: 204 },
    errors: [],
  },
  adminUnblockPeer: {
    method: "delete",
    path: "/admin/v1/federation/peers/:server/block",
    summary:
      "Federation: unblock a server blocked with `PUT …/block` (the policy of --federation and --federation-deny still applies)",
    auth: "admin",
    params: peerParamsSchema,
    success: { status: 204 },
    errors: [],
  },
  adminRotateCertificate: {
    method: "post",
    path: "/admin/v1/certificate/rotate",
    summary:
      "Replace the server key and certificate (next key id, signed by the unchanged trust root); new sender certificates use it, " +
      "earlier ones stay valid until they expire. Needs the trust root's private key in the data directory (409 `trust_root_offline`)",
    auth: "admin",
    success: { status: 200, schema: rotateCertificateResponseSchema },
    errors: ["trust_root_offline"],
  },
} as const satisfies Record<string, RouteSpec>;

/** The name of a route in {@link adminRoutes}. */
export type AdminRouteName = keyof typeof adminRoutes;

/** The name of a route in {@link routes}. */
export type RouteName = keyof typeof routes;

/**
 * A REST route whose request or answer body is raw bytes rather than JSON
 * (encrypted attachments). The JSON router does not mount these: the server
 * mounts them on a streaming router that never buffers a body, and
 * `/openapi.json` documents them from this table like the others.
 */
export interface StreamRouteSpec extends Omit<RouteSpec, "body"> {
  /** Which side is `application/octet-stream`: the request body (upload) or the answer (download, with HTTP Range). */
  stream: "request" | "response";
}

/** The raw-body REST routes (see {@link StreamRouteSpec}). */
export const streamRoutes = {
  uploadAttachment: {
    method: "post",
    path: "/v1/attachments",
    summary:
      "Upload an encrypted attachment: the raw body is the client's padded ciphertext (Content-Length or chunked), " +
      "capped per file (413 body_too_large) and per account (413 quota_exceeded); deleted after the server's retention time",
    auth: "device",
    stream: "request",
    success: { status: 201, schema: uploadAttachmentResponseSchema },
    errors: ["quota_exceeded"],
  },
  downloadAttachment: {
    method: "get",
    path: "/v1/attachments/:id",
    summary:
      "Download an encrypted attachment (any authenticated device: the id is the capability); one HTTP Range per request",
    auth: "device",
    stream: "response",
    params: z.strictObject({ id: attachmentIdSchema }),
    success: { status: 200 },
    errors: ["not_found", "range_not_satisfiable"],
  },
  federationDownloadAttachment: {
    method: "get",
    path: "/federation/v1/attachments/:id",
    summary:
      "Federation: an encrypted attachment of this server, for a peer's user who holds its id (the id is the capability); one HTTP Range per request; rate limited per origin server",
    auth: "server",
    stream: "response",
    params: z.strictObject({ id: attachmentIdSchema }),
    success: { status: 200 },
    errors: ["not_found", "range_not_satisfiable", "rate_limited"],
    rateLimits: ["federationAttachmentDownload"],
  },
  remoteDownloadAttachment: {
    method: "get",
    path: "/v1/federation/:server/attachments/:id",
    summary:
      "Download an encrypted attachment stored on another server (federation), streamed through this server; one HTTP Range per request",
    auth: "device",
    stream: "response",
    params: z.strictObject({ server: serverNameSchema, id: attachmentIdSchema }),
    success: { status: 200 },
    errors: [
      "not_found",
      "range_not_satisfiable",
      "peer_not_allowed",
      "peer_unavailable",
      "rate_limited",
      "body_too_large",
    ],
    rateLimits: ["remoteAttachmentDownload"],
  },
  adminBackup: {
    method: "post",
    path: "/admin/v1/backup",
    summary:
      "An online backup of the SQLite database (SQLite's backup API; consistent while the server keeps serving), streamed as a " +
      "SQLite file; restore it offline with `zimchat admin restore`. On PostgreSQL: 409 `backup_unsupported` (use pg_dump)",
    auth: "admin",
    stream: "response",
    success: { status: 200 },
    errors: ["backup_unsupported"],
  },
} as const satisfies Record<string, StreamRouteSpec>;

/** The name of a route in {@link streamRoutes}. */
export type StreamRouteName = keyof typeof streamRoutes;
