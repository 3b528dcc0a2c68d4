/** Client devices on SQLite stores in a temporary directory, and small waits for what they receive. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDeviceStore, ZimClient, type MessageEvent, type ZimClientOptions } from "@zimchat/client";

let counter = 0;

/** A directory for device stores (one per process, deleted when it exits). */
export const deviceDir = mkdtempSync(join(tmpdir(), "zimchat-devices-"));
process.once("exit", () => rmSync(deviceDir, { recursive: true, force: true }));

/** Registers a device with a SQLite store in {@link deviceDir}. */
export async function registerDevice(
  serverUrl: string,
  name?: string,
  options: Partial<ZimClientOptions> = {},
): Promise<ZimClient> {
  const username = name ?? `u${process.pid}_${++counter}`;
  return ZimClient.register({
    serverUrl,
    username,
    store: new SqliteDeviceStore(join(deviceDir, `${username}.db`)),
    ...options,
  });
}

/** Collects `message` events. */
export function inbox(client: ZimClient): MessageEvent[] {
  const messages: MessageEvent[] = [];
  client.on("message", (m) => messages.push(m));
  return messages;
}

/** Waits until `list` has `count` items. */
export async function until<T>(list: T[], count: number, timeoutMs = 15_000): Promise<T[]> {
  const deadline = Date.now() + timeoutMs;
  while (list.length < count) {
    if (Date.now() > deadline) throw new Error(`only ${list.length} of ${count} arrived`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return list;
}
