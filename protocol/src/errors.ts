import { z } from "zod";
import { recipientMismatchSchema } from "./sealed.js";

/**
 * Every machine-readable error code the homeserver answers with, and the
 * HTTP status it comes with. Clients switch on `code`, never on `message`.
 */
export const errorStatus = {
  malformed_json: 400,
  too_deeply_nested: 400,
  invalid_request: 400,
  invalid_key: 400,
  invalid_ciphertext: 400,
  unauthorized: 401,
  federation_unauthorized: 401,
  forbidden: 403,
  peer_not_allowed: 403,
  registration_closed: 403,
  invite_required: 403,
  invalid_invite: 403,
  envelope_not_owned: 403,
  refused_by_plugin: 403,
  account_disabled: 403,
  not_found: 404,
  method_not_allowed: 405,
  link_not_found: 404,
  link_not_confirmed: 409,
  link_already_confirmed: 409,
  too_many_devices: 409,
  link_expired: 410,
  username_taken: 409,
  backup_unsupported: 409,
  trust_root_offline: 409,
  mismatched_devices: 409,
  stale_devices: 410,
  upload_timeout: 408,
  body_too_large: 413,
  content_too_large: 413,
  quota_exceeded: 413,
  range_not_satisfiable: 416,
  mailbox_full: 507,
  outbox_full: 507,
  invalid_signature: 422,
  idempotency_conflict: 422,
  rate_limited: 429,
  too_many_uploads: 429,
  too_many_attachments: 429,
  too_many_connections: 429,
  too_many_failed_logins: 429,
  internal: 500,
  peer_unavailable: 502,
  unavailable: 503,
  storage_full: 507,
} as const;

/** A machine-readable error code. */
export type ErrorCode = keyof typeof errorStatus;

/** All error codes, for schemas and exhaustive tests. */
export const errorCodes = Object.keys(errorStatus) as [ErrorCode, ...ErrorCode[]];

/** One problem found while validating a request. */
export const issueSchema = z.object({
  path: z.array(z.union([z.string(), z.number()])).describe("Where in the body, query or path the problem is"),
  message: z.string(),
});

/**
 * The body of every error answer. Some codes carry extra fields:
 * `mismatched_devices` has `missingDevices` and `extraDevices`,
 * `stale_devices` has `staleDevices`, `rate_limited`, `storage_full` and
 * `unavailable` (a busy database) have `retryAfterSeconds`,
 * `invalid_request` has `issues`, `refused_by_plugin` has `plugin` and
 * `pluginCode` (and `retryAfterSeconds` for a quota).
 */
export const errorBodySchema = z
  .object({
    code: z.enum(errorCodes),
    message: z.string(),
    issues: z.array(issueSchema).optional(),
    missingDevices: z.array(z.number().int()).optional(),
    extraDevices: z.array(z.number().int()).optional(),
    staleDevices: z.array(z.number().int()).optional(),
    recipients: z
      .array(recipientMismatchSchema)
      .optional()
      .describe(
        "Multi-recipient sends: the device mismatches of each failing recipient (409 `mismatched_devices`, 410 `stale_devices`), " +
          "or the recipients without an account (404 `not_found`, authenticated sends only: without credentials that is a 401)",
      ),
    retryAfterSeconds: z.number().int().optional(),
    plugin: z.string().optional().describe("`refused_by_plugin`: the name of the server plugin that refused"),
    pluginCode: z
      .string()
      .optional()
      .describe("`refused_by_plugin`: the plugin's own machine-readable reason (e.g. `send_quota_exceeded`)"),
    reason: z
      .enum(["unsigned", "wrong_destination", "bad_digest", "unknown_key", "bad_signature"])
      .optional()
      .describe(
        "`federation_unauthorized`: why a server's request was refused (no signature, addressed to another server, body not as digested, a key the origin does not publish, a signature that does not verify or expired)",
      ),
  })
  .meta({ id: "Error" });

/** The body of every error answer. */
export type ErrorBody = z.infer<typeof errorBodySchema>;
