import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PrivateKey } from "@signalapp/libsignal-client";

/** The log's private key file in the plugin's data directory (base64, mode 0600). */
export const logKeyFileName = "log.key";

/** The log key file is missing something, unreadable or readable by others; the message says what to do. */
export class LogKeyError extends Error {
  override name = "LogKeyError";
}

/**
 * Loads the log's signing key from `<dataDir>/log.key`, creating it (mode
 * 0600, atomically) on first start. Refuses a key file that group or others
 * may read or write, as the homeserver does for its sealed-sender keys.
 * @returns the key, and whether it was created now
 * @throws LogKeyError naming the file and the command that fixes it
 */
export function loadOrCreateLogKey(dataDir: string): { key: PrivateKey; created: boolean } {
  const path = join(dataDir, logKeyFileName);
  if (!existsSync(path)) {
    const key = PrivateKey.generate();
    const temp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    writeFileSync(temp, `${Buffer.from(key.serialize()).toString("base64")}\n`, { mode: 0o600, flag: "wx" });
    chmodSync(temp, 0o600);
    renameSync(temp, path);
    return { key, created: true };
  }
  if (process.platform !== "win32") {
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077) {
      throw new LogKeyError(
        `${path} has mode ${mode.toString(8).padStart(4, "0")}: the key-transparency log key must be readable by its owner only (run: chmod 600 ${path})`,
      );
    }
  }
  try {
    return {
      key: PrivateKey.deserialize(new Uint8Array(Buffer.from(readFileSync(path, "utf8").trim(), "base64"))),
      created: false,
    };
  } catch (error) {
    throw new LogKeyError(
      `${path} is not a libsignal private key: restore the log key clients pinned, or move the file away to start a new log (clients will report log_key_changed)`,
      { cause: error },
    );
  }
}

/** SHA-256 of the serialized public key, hex in groups of four: what an admin publishes out of band. */
export function logKeyFingerprint(publicKey: Uint8Array): string {
  return createHash("sha256").update(publicKey).digest("hex").match(/.{4}/g)!.join(" ");
}
