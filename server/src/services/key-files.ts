import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { PrivateKey, PublicKey, ServerCertificate } from "@signalapp/libsignal-client";
import { ConfigError } from "../config.js";

/**
 * The sealed-sender key material of a homeserver: the trust root (which
 * clients pin) and the server key whose certificate the trust root signed
 * (which signs sender certificates).
 */
export interface ServerKeys {
  trustRoot: PublicKey;
  serverCertificate: ServerCertificate;
  serverKey: PrivateKey;
}

/** The files under `<dataDir>/keys`. Private keys are mode 0600; the directory is 0700. */
export const keyFileNames = {
  /** The trust root's private key (base64). It may be moved offline once the server certificate exists. */
  trustRootKey: "trust-root.key",
  /** The trust root's public key (base64), what clients pin. */
  trustRootPublic: "trust-root.pub",
  /** The server's private key (base64), which signs sender certificates. */
  serverKey: "server.key",
  /** The server certificate (base64): the server's public key signed by the trust root. */
  serverCertificate: "server.crt",
} as const;

/** Thrown at start-up when key files are missing, unreadable or too open; the message says what to do. */
export class KeyFileError extends ConfigError {
  override name = "KeyFileError";
}

/** The directory that holds the key files. */
export function keyDirectory(dataDir: string): string {
  return join(dataDir, "keys");
}

/**
 * The fingerprint admins publish out of band: SHA-256 of the serialized
 * public key, lowercase hex in groups of four.
 * @example fingerprint(trustRoot) // "3f2a 91c0 ..." (16 groups)
 */
export function fingerprint(key: PublicKey): string {
  const hex = createHash("sha256").update(key.serialize()).digest("hex");
  return hex.match(/.{4}/g)!.join(" ");
}

/**
 * Loads the keys from `<dataDir>/keys`, creating what is missing: a trust
 * root when there is none, and a server key with a certificate signed by the
 * trust root when there is none that the trust root signed. Without
 * `trust-root.key` (kept offline) the server runs on its existing
 * certificate but cannot issue a new one.
 * @returns the keys, and whether anything was created
 * @throws KeyFileError for a private key file readable by others, or files that do not fit together
 */
export function loadOrCreateKeys(dataDir: string): { keys: ServerKeys; created: boolean } {
  const dir = keyDirectory(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let created = false;

  let trustRootKey = readPrivateKey(join(dir, keyFileNames.trustRootKey));
  let trustRoot = trustRootKey?.getPublicKey() ?? readPublicKey(join(dir, keyFileNames.trustRootPublic));
  if (!trustRoot) {
    if (existsSync(join(dir, keyFileNames.serverKey)) || existsSync(join(dir, keyFileNames.serverCertificate))) {
      // A node starting at the same moment on this shared directory may have written its trust root, then its server
      // key, since the read above.
      trustRootKey = readPrivateKey(join(dir, keyFileNames.trustRootKey));
      trustRoot = trustRootKey?.getPublicKey() ?? null;
      if (!trustRoot) {
        throw new KeyFileError(
          `${dir} has a server key but no trust root: restore ${keyFileNames.trustRootKey}, or move the keys directory away to start over (clients will have to pin a new trust root)`,
        );
      }
    } else {
      // Several nodes may start at once on one shared data directory: the first write wins, the others read the
      // winner's key.
      if (writeKeyFile(join(dir, keyFileNames.trustRootKey), PrivateKey.generate().serialize())) created = true;
      trustRootKey = readPrivateKey(join(dir, keyFileNames.trustRootKey))!;
      trustRoot = trustRootKey.getPublicKey();
    }
  }
  const published = readPublicKey(join(dir, keyFileNames.trustRootPublic));
  if (!published) {
    writeKeyFile(join(dir, keyFileNames.trustRootPublic), trustRoot.serialize());
    if (!readPublicKey(join(dir, keyFileNames.trustRootPublic))!.equals(trustRoot)) {
      throw new KeyFileError(
        `${keyFileNames.trustRootPublic} and ${keyFileNames.trustRootKey} in ${dir} are not one key pair: restore the pair clients pinned`,
      );
    }
  } else if (!published.equals(trustRoot)) {
    throw new KeyFileError(
      `${keyFileNames.trustRootPublic} and ${keyFileNames.trustRootKey} in ${dir} are not one key pair: restore the pair clients pinned`,
    );
  }

  const existing = readServerKey(dir, trustRoot);
  if (existing) return { keys: { trustRoot, ...existing }, created };
  if (!trustRootKey) {
    throw new KeyFileError(
      `${dir} has no valid server certificate and no ${keyFileNames.trustRootKey} to issue one: put the trust root's private key back (mode 0600), then start again`,
    );
  }
  const { serverCertificate, serverKey } = issueServerKey(dir, trustRoot, trustRootKey);
  return { keys: { trustRoot, serverCertificate, serverKey }, created: true };
}

/**
 * Creates a server key and its certificate with the next key id, signed by
 * the trust root. Nodes sharing one data directory serialize this under a
 * lock file created exclusively. Without `rotate`, a node that finds a valid
 * pair (another node's, just issued) uses it instead of issuing its own.
 */
function issueServerKey(
  dir: string,
  trustRoot: PublicKey,
  trustRootKey: PrivateKey,
  rotate = false,
): { serverCertificate: ServerCertificate; serverKey: PrivateKey; previousKeyId: number } {
  const lock = join(dir, "issue.lock");
  const deadline = Date.now() + 10_000;
  while (!writeKeyFile(lock, randomBytes(8))) {
    const winner = rotate ? null : readServerKey(dir, trustRoot);
    if (winner) return { ...winner, previousKeyId: winner.serverCertificate.keyId() };
    // A lock left by a node that died while issuing: after the deadline it is taken over.
    if (Date.now() > deadline) {
      unlinkSync(lock);
      continue;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  try {
    const existing = rotate ? null : readServerKey(dir, trustRoot);
    if (existing) return { ...existing, previousKeyId: existing.serverCertificate.keyId() };
    const serverKey = PrivateKey.generate();
    const previousKeyId = readCertificate(join(dir, keyFileNames.serverCertificate))?.keyId() ?? 0;
    const serverCertificate = ServerCertificate.new(previousKeyId + 1, serverKey.getPublicKey(), trustRootKey);
    writeKeyFile(join(dir, keyFileNames.serverKey), serverKey.serialize(), true);
    writeKeyFile(join(dir, keyFileNames.serverCertificate), serverCertificate.serialize(), true);
    return { serverCertificate, serverKey, previousKeyId };
  } finally {
    unlinkSync(lock);
  }
}

/** Thrown when a rotation needs the trust root's private key and it is not in the data directory (kept offline). */
export class TrustRootOfflineError extends KeyFileError {
  override name = "TrustRootOfflineError";
}

/**
 * The keys as they are on disk, without creating anything (other nodes
 * sharing the data directory re-read them after a rotation).
 * @returns null when a file is missing or the server key and certificate do not fit together (a rotation half-written)
 * @throws KeyFileError for a private key file readable by others or a file that is not a key
 */
export function readServerKeys(dataDir: string): ServerKeys | null {
  const dir = keyDirectory(dataDir);
  const trustRoot = readTrustRoot(dataDir);
  const server = trustRoot && readServerKey(dir, trustRoot);
  return server ? { trustRoot, ...server } : null;
}

/**
 * Replaces the server key and certificate: a new key pair, a certificate
 * with the next key id signed by the (unchanged) trust root, both written
 * atomically with mode 0600. Sender certificates issued with the previous
 * server key keep verifying, since they chain to the same trust root.
 * @throws TrustRootOfflineError without `trust-root.key` in the data directory
 */
export function rotateServerKey(dataDir: string): { keys: ServerKeys; previousKeyId: number } {
  const dir = keyDirectory(dataDir);
  const trustRootKey = readPrivateKey(join(dir, keyFileNames.trustRootKey));
  if (!trustRootKey) {
    throw new TrustRootOfflineError(
      `${join(dir, keyFileNames.trustRootKey)} is not there (kept offline?): put it back to rotate the server certificate`,
    );
  }
  const trustRoot = trustRootKey.getPublicKey();
  const { serverCertificate, serverKey, previousKeyId } = issueServerKey(dir, trustRoot, trustRootKey, true);
  return { keys: { trustRoot, serverCertificate, serverKey }, previousKeyId };
}

/**
 * What identifies the current server key files (inode, size and mtime of
 * both): it changes when a rotation, here or on another node, replaced them.
 */
export function serverKeyStamp(dataDir: string): string {
  const dir = keyDirectory(dataDir);
  return [keyFileNames.serverKey, keyFileNames.serverCertificate]
    .map((name) => {
      const info = statSync(join(dir, name), { throwIfNoEntry: false });
      return info ? `${info.ino}:${info.size}:${info.mtimeMs}` : "-";
    })
    .join("/");
}

/**
 * The trust root's public key, without creating anything.
 * @returns null when there is none yet
 * @throws KeyFileError for a private key file readable by others
 */
export function readTrustRoot(dataDir: string): PublicKey | null {
  const dir = keyDirectory(dataDir);
  return (
    readPrivateKey(join(dir, keyFileNames.trustRootKey))?.getPublicKey() ??
    readPublicKey(join(dir, keyFileNames.trustRootPublic))
  );
}

/** The server key and certificate, if both exist and the trust root signed the certificate (checked by libsignal). */
function readServerKey(
  dir: string,
  trustRoot: PublicKey,
): { serverCertificate: ServerCertificate; serverKey: PrivateKey } | null {
  const serverKey = readPrivateKey(join(dir, keyFileNames.serverKey));
  const serverCertificate = readCertificate(join(dir, keyFileNames.serverCertificate));
  if (!serverKey || !serverCertificate) return null;
  if (!trustRoot.verify(serverCertificate.certificateData(), serverCertificate.signature())) return null;
  if (!serverCertificate.key().equals(serverKey.getPublicKey())) return null;
  return { serverCertificate, serverKey };
}

/** Reads a private key file, refusing one that group or others may access. */
function readPrivateKey(path: string): PrivateKey | null {
  const bytes = readKeyFile(path, true);
  if (!bytes) return null;
  try {
    return PrivateKey.deserialize(bytes);
  } catch (error) {
    throw new KeyFileError(`${path} is not a libsignal private key`, { cause: error });
  }
}

function readPublicKey(path: string): PublicKey | null {
  const bytes = readKeyFile(path, false);
  if (!bytes) return null;
  try {
    return PublicKey.deserialize(bytes);
  } catch (error) {
    throw new KeyFileError(`${path} is not a libsignal public key`, { cause: error });
  }
}

function readCertificate(path: string): ServerCertificate | null {
  const bytes = readKeyFile(path, false);
  if (!bytes) return null;
  try {
    return ServerCertificate.deserialize(bytes);
  } catch (error) {
    throw new KeyFileError(`${path} is not a libsignal server certificate`, { cause: error });
  }
}

function readKeyFile(path: string, secret: boolean): Uint8Array<ArrayBuffer> | null {
  if (!existsSync(path)) return null;
  if (secret) checkMode(path);
  return new Uint8Array(Buffer.from(readFileSync(path, "utf8").trim(), "base64"));
}

/**
 * Refuses a secret file that anyone but its owner may read or write
 * (modes are not meaningful on Windows, so the check is skipped there).
 * @throws KeyFileError naming the file and the command that fixes it
 */
export function checkMode(path: string): void {
  if (process.platform === "win32") return;
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    throw new KeyFileError(
      `${path} has mode ${mode.toString(8).padStart(4, "0")}: a private key must be readable by its owner only (run: chmod 600 ${path})`,
    );
  }
}

/**
 * Writes base64 to a file with mode 0600, complete or not at all (a temp
 * file, then linked in place). Without `replace` an existing file is kept
 * (the link fails), so of several nodes writing at once exactly one wins.
 * @returns whether this call's bytes are now in the file
 */
export function writeKeyFile(path: string, bytes: Uint8Array, replace = false): boolean {
  const temp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(temp, `${Buffer.from(bytes).toString("base64")}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(temp, 0o600);
  try {
    if (replace) renameSync(temp, path);
    else linkSync(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    if (!replace) unlinkSync(temp);
  }
}
