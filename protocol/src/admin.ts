import { z } from "zod";
import { serverNameSchema } from "./federation.js";
import { deviceIdParamSchema, usernameSchema, uuidSchema } from "./primitives.js";

/** Most accounts one `GET /admin/v1/accounts` page returns. */
export const maxAdminPageSize = 500;

/** An invite id as `invite list` shows it (8 hex digits). */
export const inviteIdSchema = z.string().regex(/^[0-9a-f]{8}$/, "must be an invite id (8 hex digits)");

/** `POST /admin/v1/invites`: how many registrations the invite allows and for how long. */
export const createInviteRequestSchema = z
  .strictObject({
    maxUses: z.number().int().min(1).max(10_000).default(1),
    expiresInSeconds: z
      .number()
      .int()
      .min(60)
      .max(365 * 86_400)
      .default(7 * 86_400),
  })
  .meta({ id: "CreateInviteRequest" });

/** A new invite: the token is shown here once; only its hash is stored. */
export const createInviteResponseSchema = z
  .object({ id: z.string(), token: z.string(), maxUses: z.number().int(), expiresAt: z.string().describe("ISO 8601") })
  .meta({ id: "CreateInviteResponse" });

/** One invite as listed (never its token). */
export const inviteInfoSchema = z
  .object({
    id: z.string(),
    maxUses: z.number().int(),
    uses: z.number().int(),
    expiresAt: z.string(),
    createdAt: z.string(),
    revokedAt: z.string().nullable(),
  })
  .meta({ id: "InviteInfo" });

/** `GET /admin/v1/invites`. */
export const inviteListResponseSchema = z
  .object({ invites: z.array(inviteInfoSchema) })
  .meta({ id: "InviteListResponse" });

/** `GET /admin/v1/accounts?cursor=&limit=`: accounts ordered by id, after `cursor`. */
export const accountListQuerySchema = z.strictObject({
  cursor: uuidSchema.optional().describe("The `nextCursor` of the previous page"),
  limit: z
    .string()
    .regex(/^[1-9][0-9]{0,3}$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().int().min(1).max(maxAdminPageSize))
    .optional()
    .describe(`Accounts per page, 1..${maxAdminPageSize} (default 100)`),
});

/** One account as admins see it: metadata only, no keys. */
export const adminAccountSchema = z
  .object({
    id: uuidSchema,
    username: z.string(),
    created: z.string().describe("Creation day, YYYY-MM-DD"),
    devices: z.number().int(),
    disabled: z.boolean(),
    attachmentBytes: z.number().int().describe("Stored (padded ciphertext) bytes of the account's attachments"),
  })
  .meta({ id: "AdminAccount" });

/** A page of accounts; `nextCursor` is null on the last page. */
export const accountListResponseSchema = z
  .object({ accounts: z.array(adminAccountSchema), nextCursor: uuidSchema.nullable() })
  .meta({ id: "AccountListResponse" });

/** An account named by its id or its username. */
export const accountRefSchema = z.union([uuidSchema, usernameSchema]);

/** Path parameters naming an account. */
export const accountParamsSchema = z.strictObject({ account: accountRefSchema });

/** Path parameters naming one device of an account. */
export const accountDeviceParamsSchema = z.strictObject({ account: accountRefSchema, deviceId: deviceIdParamSchema });

/** `GET /admin/v1/stats`. */
export const serverStatsSchema = z
  .object({
    accounts: z.number().int(),
    disabledAccounts: z.number().int(),
    devices: z.number().int(),
    queuedEnvelopes: z.number().int(),
    connectedDevices: z.number().int().describe("Authenticated Socket.IO connections, across every node"),
  })
  .meta({ id: "ServerStats" });

/** One other homeserver as this server's federation sees it (`GET /admin/v1/federation/peers`). */
export const federationPeerSchema = z
  .object({
    server: serverNameSchema,
    pending: z.number().int().describe("Sends waiting in the outbox for that server"),
    failures: z.number().int().describe("Failed transactions in a row (0: the last one succeeded)"),
    nextAttemptAt: z
      .number()
      .int()
      .describe("ms since the epoch: no transaction before then (backoff; 0 or past: none)"),
    blocked: z.boolean().describe("Blocked by an admin: refused both ways (403 `peer_not_allowed`)"),
    pinned: z
      .boolean()
      .describe(
        "Pinned by `--federation-allow name=sha256:<hex>`: its document is refused unless its identity key has that fingerprint",
      ),
    fingerprint: z
      .string()
      .regex(/^sha256:[0-9a-f]{64}$/)
      .nullable()
      .describe(
        "The fingerprint of its identity key (`sha256:` and 64 hex digits) in the document this node last verified; for a pinned server whose document was refused, the one it presented; null when none was seen",
      ),
  })
  .meta({ id: "FederationPeer" });
export type FederationPeer = z.infer<typeof federationPeerSchema>;

/** `GET /admin/v1/federation/peers`: every server this one has relayed to, blocked or pinned, by name. */
export const federationPeerListSchema = z
  .object({ peers: z.array(federationPeerSchema) })
  .meta({ id: "FederationPeerList" });
export type FederationPeerList = z.infer<typeof federationPeerListSchema>;

/** The `:server` path parameter of the admin peer routes. */
export const peerParamsSchema = z.strictObject({ server: serverNameSchema });

/** `POST /admin/v1/certificate/rotate`: the new server certificate. */
export const rotateCertificateResponseSchema = z
  .object({
    keyId: z.number().int().describe("The new server certificate's key id (the previous one plus one)"),
    previousKeyId: z.number().int(),
    trustRootFingerprint: z.string().describe("Unchanged: clients keep their pinned trust root"),
  })
  .meta({ id: "RotateCertificateResponse" });

/** A request for a new invite. */
export type CreateInviteRequest = z.input<typeof createInviteRequestSchema>;
/** A new invite with its token. */
export type CreateInviteResponse = z.infer<typeof createInviteResponseSchema>;
/** An invite as listed. */
export type InviteInfo = z.infer<typeof inviteInfoSchema>;
/** One account as admins see it. */
export type AdminAccount = z.infer<typeof adminAccountSchema>;
/** A page of accounts. */
export type AccountListResponse = z.infer<typeof accountListResponseSchema>;
/** Server statistics. */
export type ServerStats = z.infer<typeof serverStatsSchema>;
/** The result of a certificate rotation. */
export type RotateCertificateResponse = z.infer<typeof rotateCertificateResponseSchema>;
