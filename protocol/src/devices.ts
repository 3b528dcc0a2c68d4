import { z } from "zod";
import { limits } from "./limits.js";
import {
  base64Bytes,
  deviceIdSchema,
  passwordSchema,
  registrationIdSchema,
  usernameSchema,
  uuidSchema,
} from "./primitives.js";
import { signedEcPreKeySchema, signedKyberPreKeySchema } from "./keys.js";

/**
 * A linking code: 16 random bytes as base64url (22 characters). The new
 * device shows it (as text and inside a QR payload together with its
 * ephemeral public key); the server stores only its SHA-256.
 */
export const linkCodeSchema = z.string().regex(/^[A-Za-z0-9_-]{22}$/, "must be a 22-character base64url linking code");

/** `POST /v1/devices/links`: a new device asks for a linking code (valid `limits.linkCodeTtlSeconds`). */
export const createLinkResponseSchema = z
  .object({ code: linkCodeSchema, expiresAt: z.number().int().describe("ms since the epoch") })
  .meta({ id: "CreateLinkResponse" });
export type CreateLinkResponse = z.infer<typeof createLinkResponseSchema>;

/**
 * `PUT /v1/devices/links/{code}`: the primary device confirms a link by
 * attaching the provisioning message: the account's identity key pair and
 * what a new device needs, sealed (libsignal `PublicKey.seal`) to the new
 * device's ephemeral key. The server cannot read it.
 */
export const confirmLinkRequestSchema = z
  .strictObject({
    provisioningMessage: base64Bytes(1, limits.maxProvisioningMessageBytes, "the sealed provisioning message"),
  })
  .meta({ id: "ConfirmLinkRequest" });
export type ConfirmLinkRequest = z.infer<typeof confirmLinkRequestSchema>;

/** `GET /v1/devices/links/{code}`: the new device polls for the provisioning message. */
export const linkStatusResponseSchema = z
  .object({
    confirmed: z.boolean(),
    provisioningMessage: z.string().meta({ contentEncoding: "base64" }).optional().describe("Present once confirmed"),
  })
  .meta({ id: "LinkStatusResponse" });
export type LinkStatusResponse = z.infer<typeof linkStatusResponseSchema>;

/**
 * `POST /v1/devices`: register a linked device with a confirmed, unexpired,
 * unused linking code (consumed in the same transaction). The signed keys
 * must be signed by the account's identity key. The device gets the lowest
 * free id; its password is used as HTTP Basic `uuid.deviceId:password`.
 */
export const linkDeviceRequestSchema = z
  .strictObject({
    code: linkCodeSchema,
    password: passwordSchema,
    registrationId: registrationIdSchema,
    signedPreKey: signedEcPreKeySchema,
    pqLastResortPreKey: signedKyberPreKeySchema,
  })
  .meta({ id: "LinkDeviceRequest" });
export type LinkDeviceRequest = z.infer<typeof linkDeviceRequestSchema>;

/** The answer to a device link. */
export const linkDeviceResponseSchema = z
  .object({ uuid: uuidSchema, deviceId: deviceIdSchema, username: usernameSchema })
  .meta({ id: "LinkDeviceResponse" });
export type LinkDeviceResponse = z.infer<typeof linkDeviceResponseSchema>;

const daySchema = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must be a YYYY-MM-DD day (UTC)");

/**
 * A device of the authenticated account, dates at day granularity
 * (`YYYY-MM-DD`, UTC); `lastSeen` is null until the device has authenticated.
 */
export const deviceInfoSchema = z
  .object({ id: deviceIdSchema, created: daySchema, lastSeen: daySchema.nullable() })
  .meta({ id: "DeviceInfo" });
export type DeviceInfo = z.infer<typeof deviceInfoSchema>;

/** `GET /v1/devices`: the account's devices. */
export const deviceListResponseSchema = z
  .object({ devices: z.array(deviceInfoSchema) })
  .meta({ id: "DeviceListResponse" });
export type DeviceListResponse = z.infer<typeof deviceListResponseSchema>;
