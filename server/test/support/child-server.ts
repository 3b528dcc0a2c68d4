/**
 * The real `zimchat serve` as a child process, for tests that kill it.
 */
import { io as connectClient, type Socket } from "socket.io-client";
import type { ClientToServerEvents, Envelope, ServerToClientEvents } from "@zimchat/protocol";
import { spawnZimchatServe, type ServeProcess } from "@zimchat/testing/spawn";
import { SignalDevice } from "@zimchat/testing/signal";

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

/** A device's socket to a child server. */
export type DeviceSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/**
 * Connects as `device` and collects what the server sends it, confirming
 * each batch but acknowledging nothing, until `queue-empty`; the socket stays
 * open (and keeps collecting live pushes into `envelopes`).
 */
export async function drainQueue(
  url: string,
  device: SignalDevice,
): Promise<{ socket: DeviceSocket; envelopes: Envelope[] }> {
  const socket: DeviceSocket = connectClient(url, {
    auth: device.socketAuth,
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
  });
  const envelopes: Envelope[] = [];
  socket.on("envelopes", (batch, confirm) => {
    envelopes.push(...batch);
    confirm?.();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("queue-empty", () => resolve());
    socket.once("connect_error", reject);
    setTimeout(() => reject(new Error("no queue-empty")), 15_000).unref();
  });
  return { socket, envelopes };
}

/** Registers Alice and Bob (open registration) and sets up Alice's session to Bob's device 1 from his bundle. */
export async function registerPair(
  url: string,
  names: [alice: string, bob: string],
): Promise<{ alice: SignalDevice; bob: SignalDevice }> {
  const alice = new SignalDevice();
  const bob = new SignalDevice();
  for (const [device, name] of [
    [alice, names[0]],
    [bob, names[1]],
  ] as const) {
    const res = await callJson(url, "POST", "/v1/accounts", device.registration(name));
    if (res.status !== 201) throw new Error(`registering ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    device.uuid = res.body.uuid;
  }
  const bundle = await callJson(url, "GET", `/v1/keys/${bob.uuid}/1`, undefined, alice.authHeader);
  await alice.processBundle(bob.uuid, bundle.body);
  return { alice, bob };
}
