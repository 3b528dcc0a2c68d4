import { z } from "zod";
import { limits } from "./limits.js";
import {
  deviceIdSchema,
  ecPublicKeySchema,
  keyIdSchema,
  kyberPublicKeySchema,
  registrationIdSchema,
  signatureSchema,
} from "./primitives.js";

/** A one-time EC pre-key (unsigned). */
export const ecPreKeySchema = z
  .strictObject({ keyId: keyIdSchema, publicKey: ecPublicKeySchema })
  .meta({ id: "EcPreKey" });
export type EcPreKey = z.infer<typeof ecPreKeySchema>;

/** A signed EC pre-key: the signature is the identity key's over the serialized public key. */
export const signedEcPreKeySchema = z
  .strictObject({ keyId: keyIdSchema, publicKey: ecPublicKeySchema, signature: signatureSchema })
  .meta({ id: "SignedEcPreKey" });
export type SignedEcPreKey = z.infer<typeof signedEcPreKeySchema>;

/** A signed Kyber pre-key (one-time or last-resort). */
export const signedKyberPreKeySchema = z
  .strictObject({ keyId: keyIdSchema, publicKey: kyberPublicKeySchema, signature: signatureSchema })
  .meta({ id: "SignedKyberPreKey" });
export type SignedKyberPreKey = z.infer<typeof signedKyberPreKeySchema>;

/**
 * `PUT /v1/keys`: replace the signed pre-key and/or the Kyber last-resort key,
 * and add one-time keys. Every signature is checked against the account's
 * identity key; one bad signature refuses the whole request (422).
 */
export const uploadKeysRequestSchema = z
  .strictObject({
    signedPreKey: signedEcPreKeySchema.optional(),
    pqLastResortPreKey: signedKyberPreKeySchema.optional(),
    preKeys: z.array(ecPreKeySchema).max(limits.maxKeysPerUpload).optional(),
    pqPreKeys: z.array(signedKyberPreKeySchema).max(limits.maxKeysPerUpload).optional(),
  })
  .meta({ id: "UploadKeysRequest" });
export type UploadKeysRequest = z.infer<typeof uploadKeysRequestSchema>;

/** `GET /v1/keys/count`: the device's remaining one-time keys. */
export const keyCountResponseSchema = z
  .object({
    ecCount: z.number().int(),
    pqCount: z.number().int(),
    draining: z
      .boolean()
      .optional()
      .describe(
        "True while this device's one-time keys are claimed faster than the server's per-device budget allows: bundles go out without them; refill now",
      ),
  })
  .meta({ id: "KeyCountResponse" });
export type KeyCountResponse = z.infer<typeof keyCountResponseSchema>;

/** One device's part of a pre-key bundle. */
export const deviceBundleSchema = z
  .object({
    deviceId: deviceIdSchema,
    registrationId: registrationIdSchema,
    signedPreKey: signedEcPreKeySchema,
    preKey: ecPreKeySchema.nullable().describe("A one-time EC pre-key, or null when they have run out"),
    pqPreKey: signedKyberPreKeySchema.describe(
      "A one-time Kyber pre-key, or the last-resort key when they have run out",
    ),
  })
  .meta({ id: "DeviceBundle" });
export type DeviceBundle = z.infer<typeof deviceBundleSchema>;

/** `GET /v1/keys/{uuid}/{deviceId}`: what a sender needs for PQXDH with each device. */
export const preKeyBundleResponseSchema = z
  .object({ identityKey: ecPublicKeySchema, devices: z.array(deviceBundleSchema) })
  .meta({ id: "PreKeyBundleResponse" });
export type PreKeyBundleResponse = z.infer<typeof preKeyBundleResponseSchema>;
