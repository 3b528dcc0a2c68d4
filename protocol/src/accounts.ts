import { z } from "zod";
import {
  deviceIdSchema,
  ecPublicKeySchema,
  passwordSchema,
  registrationIdSchema,
  usernameSchema,
  uuidSchema,
} from "./primitives.js";
import { signedEcPreKeySchema, signedKyberPreKeySchema } from "./keys.js";

/** `POST /v1/accounts`: create an account and its first device (device 1). */
export const registerRequestSchema = z
  .strictObject({
    username: usernameSchema,
    password: passwordSchema.describe("Device password chosen by the client; HTTP Basic `uuid.1:password` afterwards"),
    registrationId: registrationIdSchema,
    identityKey: ecPublicKeySchema.describe("The account's libsignal identity public key"),
    signedPreKey: signedEcPreKeySchema,
    pqLastResortPreKey: signedKyberPreKeySchema,
    inviteToken: z
      .string()
      .min(1)
      .max(128)
      .optional()
      .describe("Required when the server's registration mode is `invite`"),
  })
  .meta({ id: "RegisterRequest" });
export type RegisterRequest = z.infer<typeof registerRequestSchema>;

/** The answer to a registration. */
export const registerResponseSchema = z
  .object({ uuid: uuidSchema, deviceId: deviceIdSchema, username: usernameSchema })
  .meta({ id: "RegisterResponse" });
export type RegisterResponse = z.infer<typeof registerResponseSchema>;

/** `GET /v1/accounts/whoami`: the authenticated device. */
export const whoAmIResponseSchema = z
  .object({ uuid: uuidSchema, deviceId: deviceIdSchema, username: usernameSchema })
  .meta({ id: "WhoAmIResponse" });
export type WhoAmIResponse = z.infer<typeof whoAmIResponseSchema>;

/** `GET /v1/accounts/username/{username}`: the account id for a username. */
export const usernameLookupResponseSchema = z.object({ uuid: uuidSchema }).meta({ id: "UsernameLookupResponse" });
export type UsernameLookupResponse = z.infer<typeof usernameLookupResponseSchema>;

/**
 * `PUT /v1/accounts/identity`: a reinstall that kept its credentials. The
 * primary device (device 1) replaces the account's identity key and its own
 * registration id and signed keys. Every other device is removed, and every
 * one-time key and queued envelope of the account is deleted: nothing
 * encrypted to the old identity can be read any more. Contacts see the
 * safety number change.
 */
export const resetIdentityRequestSchema = z
  .strictObject({
    registrationId: registrationIdSchema,
    identityKey: ecPublicKeySchema,
    signedPreKey: signedEcPreKeySchema,
    pqLastResortPreKey: signedKyberPreKeySchema,
  })
  .meta({ id: "ResetIdentityRequest" });
export type ResetIdentityRequest = z.infer<typeof resetIdentityRequestSchema>;
