import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SqliteDeviceStore } from "@zimchat/client";
import { BotConfigError, BotStoreError, type BotRegistration } from "./errors.js";

/** The protocol store's file name inside the bot's directory. */
export const storeFileName = "device.db";
/** The registration marker's file name inside the bot's directory. */
export const markerFileName = "bot.json";

/**
 * The bot's device store. `ZimClient.close()` closes its store; the bot
 * closes this one itself, later, so handlers still running when the bot
 * stops can finish their replies.
 */
export class BotDeviceStore extends SqliteDeviceStore {
  private released = false;

  override close(): void {
    if (this.released) super.close();
  }

  /** Closes the database for good. */
  release(): void {
    if (this.released) return;
    this.released = true;
    super.close();
  }
}

/** Reads `bot.json`, or null when the directory holds no registered bot. */
export function readMarker(dir: string): BotRegistration | null {
  const path = join(dir, markerFileName);
  if (!existsSync(path)) return null;
  let parsed: Partial<BotRegistration>;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8")) as Partial<BotRegistration>;
  } catch (error) {
    throw new BotConfigError(
      `${path} is not readable JSON: restore it (it records which account this bot is), or move the directory aside`,
      { cause: error },
    );
  }
  if (
    typeof parsed.uuid !== "string" ||
    typeof parsed.username !== "string" ||
    typeof parsed.server !== "string" ||
    typeof parsed.deviceId !== "number"
  ) {
    throw new BotConfigError(
      `${path} lacks uuid, username, deviceId or server: restore it, or move the directory aside`,
    );
  }
  return {
    uuid: parsed.uuid,
    username: parsed.username,
    deviceId: parsed.deviceId,
    server: parsed.server,
    registeredAt: parsed.registeredAt ?? 0,
  };
}

/** Writes `bot.json` (write, then rename: never half a file). */
export function writeMarker(dir: string, registration: BotRegistration): void {
  const path = join(dir, markerFileName);
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(registration, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, path);
}

/**
 * Opens the store of a registered bot.
 * @throws BotStoreError when it is missing, cannot be opened, holds no device, or holds another account's
 */
export function openRegisteredStore(dir: string, registration: BotRegistration): BotDeviceStore {
  const path = join(dir, storeFileName);
  // SqliteDeviceStore would create a missing file: check first.
  if (!existsSync(path)) throw new BotStoreError("missing", dir, path, registration);
  let store: BotDeviceStore | undefined;
  let uuid: string | undefined;
  try {
    store = new BotDeviceStore(path);
    uuid = store.getLocal()?.uuid;
  } catch (error) {
    store?.release();
    throw new BotStoreError("unreadable", dir, path, registration, { cause: error });
  }
  if (!uuid || uuid !== registration.uuid) {
    store.release();
    throw new BotStoreError(uuid ? "other_account" : "empty", dir, path, registration);
  }
  return store;
}

/**
 * The account in a store that exists without a marker (a crash between
 * registering and writing `bot.json`), or null. A store left empty by a
 * registration that did not finish is deleted.
 */
export function unmarkedRegistration(
  dir: string,
): { uuid: string; username: string; deviceId: number; serverUrl: string } | null {
  const path = join(dir, storeFileName);
  if (!existsSync(path)) return null;
  let local;
  try {
    const store = new BotDeviceStore(path);
    local = store.getLocal();
    store.release();
  } catch (error) {
    throw new BotConfigError(
      `${path} cannot be opened, and no ${markerFileName} says whose device it is: move it aside`,
      { cause: error },
    );
  }
  if (local?.uuid) return local;
  for (const suffix of ["", "-wal", "-shm"]) rmSync(path + suffix, { force: true });
  return null;
}
