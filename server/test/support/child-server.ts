/**
 * The real `zimchat serve` as a child process, for tests that kill it.
 */
import { spawnZimchatServe, type ServeProcess } from "@zimchat/testing/spawn";

/** A running child homeserver. */
export type ChildServer = ServeProcess;

/** Starts `zimchat serve` on a free port and waits until it listens. */
export function startChildServer(args: string[], env: Record<string, string> = {}): Promise<ChildServer> {
  return spawnZimchatServe(args, { env });
}

/** One JSON request to a child server: the status and the parsed body (undefined when empty). */
export async function callJson(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  auth?: string,
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
