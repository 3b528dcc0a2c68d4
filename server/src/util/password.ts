import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Device passwords are at least 16 random bytes chosen by the client, so a
 * salted SHA-256 is enough (as Signal-Server does for its device tokens): a
 * slow password hash protects low-entropy secrets and would cost every
 * authenticated request milliseconds.
 */
export function hashPassword(
  password: string,
  salt: Uint8Array<ArrayBuffer> = randomBytes(16),
): {
  salt: Uint8Array<ArrayBuffer>;
  hash: Uint8Array<ArrayBuffer>;
} {
  const hash = createHash("sha256").update(salt).update(password, "utf8").digest();
  return { salt, hash };
}

/** Compares in constant time. */
export function verifyPassword(password: string, salt: Uint8Array<ArrayBuffer>, hash: Uint8Array): boolean {
  const candidate = hashPassword(password, salt).hash;
  return candidate.length === hash.length && timingSafeEqual(candidate, hash);
}

/** A salt and hash that match no password, to spend the same time on unknown accounts. */
export const dummyCredentials = { passwordSalt: randomBytes(16), passwordHash: randomBytes(32), disabled: false };
