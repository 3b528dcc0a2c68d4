import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { checkMode, keyDirectory, KeyFileError, writeKeyFile } from "../services/key-files.js";

/**
 * The server's federation signing keys (Ed25519, node:crypto), one per
 * rotation period, under `<dataDir>/keys/federation/<period>.key` (PKCS#8,
 * base64, mode 0600). The key of the current period signs; the previous
 * period's key stays published until it expires, so a peer that cached it
 * still verifies requests made just before a rotation. Nodes that share the
 * data directory compute the same file name for a period, and exactly one
 * of them writes it.
 */

/** A new key every 5 days. */
export const rotationPeriodMs = 5 * 86_400_000;
/** A key stays valid this long after its period ends (the overlap). */
export const rotationOverlapMs = 2 * 86_400_000;

export interface SigningKey {
  /** `ed25519:` and the first 16 hex digits of the SHA-256 of the raw public key. */
  id: string;
  privateKey: KeyObject;
  /** The raw 32-byte public key. */
  publicKey: Uint8Array;
  /** ms since the epoch. */
  validUntil: number;
}

/**
 * The server's long-term federation identity key (Ed25519): it signs the
 * server document, certifying the rotating keys listed in it, and peers
 * pin its {@link identityFingerprint}. It never rotates by itself; an
 * operator replaces it by deleting the file (peers that pinned it must then
 * be given the new fingerprint).
 */
export interface IdentityKey {
  /** `ed25519:` and the first 16 hex digits of the SHA-256 of the raw public key. */
  id: string;
  privateKey: KeyObject;
  /** The raw 32-byte public key. */
  publicKey: Uint8Array;
}

/** The identity key's file name in the federation key directory. */
export const identityKeyFileName = "identity.key";

/** The directory of the federation keys. */
export function federationKeyDirectory(dataDir: string): string {
  return join(keyDirectory(dataDir), "federation");
}

/**
 * The unexpired signing keys, newest first, creating the current period's
 * key when it is missing and deleting expired ones.
 * @throws KeyFileError for a key file others may read, or one that is not an Ed25519 private key
 */
export function loadSigningKeys(dataDir: string, now = Date.now()): SigningKey[] {
  const dir = federationKeyDirectory(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const period = Math.floor(now / rotationPeriodMs);
  const current = join(dir, `${period}.key`);
  const { privateKey } = generateKeyPairSync("ed25519");
  // Kept if another node wrote this period's key first.
  writeKeyFile(current, privateKey.export({ type: "pkcs8", format: "der" }));
  const keys: SigningKey[] = [];
  for (const name of readdirSync(dir)) {
    const match = /^(\d+)\.key$/.exec(name);
    if (!match) continue;
    const path = join(dir, name);
    const validUntil = (Number(match[1]) + 1) * rotationPeriodMs + rotationOverlapMs;
    if (validUntil <= now) {
      rmSync(path, { force: true });
      continue;
    }
    keys.push({ ...readSigningKey(path), validUntil });
  }
  return keys.sort((a, b) => b.validUntil - a.validUntil);
}

/**
 * This server's federation identity key, creating it when missing (of
 * several nodes sharing the data directory, the first to write it wins and
 * the others read it).
 * @throws KeyFileError for a key file others may read, or one that is not an Ed25519 private key
 */
export function loadIdentityKey(dataDir: string): IdentityKey {
  const dir = federationKeyDirectory(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, identityKeyFileName);
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync("ed25519");
    writeKeyFile(path, privateKey.export({ type: "pkcs8", format: "der" }));
  }
  return readSigningKey(path);
}

/**
 * The fingerprint operators exchange to pin a server (`--federation-allow
 * name=<fingerprint>`): `sha256:` and the 64 lowercase hex digits of the
 * SHA-256 of the raw identity public key.
 * @example identityFingerprint(raw) // "sha256:3f2a91c0…" (64 hex digits)
 */
export function identityFingerprint(raw: Uint8Array): string {
  return `sha256:${createHash("sha256").update(raw).digest("hex")}`;
}

function readSigningKey(path: string): Omit<SigningKey, "validUntil"> {
  checkMode(path);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({
      key: Buffer.from(readFileSync(path, "utf8").trim(), "base64"),
      format: "der",
      type: "pkcs8",
    });
  } catch (error) {
    throw new KeyFileError(`${path} is not a PKCS#8 private key`, { cause: error });
  }
  if (privateKey.asymmetricKeyType !== "ed25519") throw new KeyFileError(`${path} is not an Ed25519 key`);
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return { id: keyIdOf(publicKey), privateKey, publicKey };
}

/** The raw 32 bytes of an Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Uint8Array {
  return new Uint8Array(Buffer.from(key.export({ format: "jwk" }).x!, "base64url"));
}

/** A public key from its raw 32 bytes. */
export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  });
}

/** A key's id: `ed25519:` and the first 16 hex digits of the SHA-256 of its raw public key. */
export function keyIdOf(raw: Uint8Array): string {
  return `ed25519:${createHash("sha256").update(raw).digest("hex").slice(0, 16)}`;
}
