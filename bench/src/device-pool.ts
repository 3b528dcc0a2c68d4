/**
 * The client harness: N Socket.IO clients (websocket transport) in this
 * process, driven the same way against the relay and the homeserver. Each
 * device acknowledges what it receives at once, as a real client does.
 */
import type { ClientToServerEvents, ServerToClientEvents, SocketResult } from "@zimchat/protocol";
import { io, type Socket } from "socket.io-client";
import type { RelayClientToServerEvents, RelayServerToClientEvents } from "./relay-protocol.js";
import type { BenchAccount } from "./accounts.js";

/** What happened to one send, as the sender's callback reports it. */
export type SendOutcome = { ok: true; id: string } | { ok: false; error: string };

/** Receives what the devices see. Times are `performance.now()`. */
export interface PoolListener {
  /** `recipient` received envelopes with these ids. */
  delivered(recipient: number, ids: string[], at: number): void;
  /** `recipient`'s acknowledgement of `count` envelopes was answered. */
  acked(recipient: number, count: number, error: string | undefined): void;
}

/** N connected devices of one server. */
export interface DevicePool {
  readonly kind: "relay" | "homeserver";
  readonly size: number;
  /** Bytes of the content each send carries on the wire (before any text encoding). */
  readonly contentBytes: number;
  /** Sends one message from device `from` to device `to`. */
  send(from: number, to: number, done: (outcome: SendOutcome) => void): void;
  listen(listener: PoolListener | undefined): void;
  close(): void;
}

/** Options shared by both kinds of pool. */
export interface ConnectOptions {
  url: string;
  /** Several nodes of one cluster: device i connects to `spreadUrls[i % length]` instead of `url`. */
  spreadUrls?: readonly string[];
  count: number;
  /** Handshakes in flight at once. @default 100 */
  concurrency?: number;
  /** Per-device connect timeout. @default 60000 */
  timeoutMs?: number;
  onProgress?: (connected: number) => void;
}

type AnySocket =
  Socket<RelayServerToClientEvents, RelayClientToServerEvents> | Socket<ServerToClientEvents, ClientToServerEvents>;

/** Connects `count` bare relay clients; client i receives in room `String(i)`. */
export async function connectRelayPool(options: ConnectOptions, payload: Uint8Array): Promise<DevicePool> {
  let listener: PoolListener | undefined;
  const sockets = await connectAll(options, (index) => {
    const socket: Socket<RelayServerToClientEvents, RelayClientToServerEvents> = io(options.url, {
      ...clientOptions(options),
      auth: { id: String(index) },
    });
    socket.on("envelopes", (envelopes) => {
      const ids = envelopes.map((e) => e.id);
      listener?.delivered(index, ids, performance.now());
      socket.emit("ack", { ids }, (result) => listener?.acked(index, ids.length, result.ok ? undefined : result.error));
    });
    return socket;
  });
  return {
    kind: "relay",
    size: sockets.length,
    contentBytes: payload.length,
    send(from, to, done) {
      sockets[from]!.emit("send", { to: String(to), payload }, (result) => {
        done(result.ok ? { ok: true, id: result.value.id } : { ok: false, error: result.error });
      });
    },
    listen(next) {
      listener = next;
    },
    close: () => closeAll(sockets),
  };
}

/** Connects one authenticated device per account; client i is `accounts[i]`. */
export async function connectHomeserverPool(
  options: ConnectOptions,
  accounts: readonly BenchAccount[],
  content: Uint8Array,
): Promise<DevicePool> {
  if (accounts.length < options.count) throw new Error(`need ${options.count} accounts, have ${accounts.length}`);
  const contentBase64 = Buffer.from(content).toString("base64");
  let listener: PoolListener | undefined;
  const sockets = await connectAll(options, (index) => {
    const account = accounts[index]!;
    const url = options.spreadUrls?.length ? options.spreadUrls[index % options.spreadUrls.length]! : options.url;
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, {
      ...clientOptions(options),
      auth: { username: `${account.uuid}.1`, password: account.password },
    });
    socket.on("envelopes", (envelopes, received) => {
      const ids = envelopes.map((e) => e.id);
      // A drain batch waits for this before the next one; live pushes have no callback.
      if (typeof received === "function") received();
      listener?.delivered(index, ids, performance.now());
      socket.emit("ack", { ids }, (result) =>
        listener?.acked(index, ids.length, result.ok ? undefined : describeError(result)),
      );
    });
    return socket;
  });
  return {
    kind: "homeserver",
    size: sockets.length,
    contentBytes: content.length,
    send(from, to, done) {
      const recipient = accounts[to]!;
      const request = {
        destination: recipient.uuid,
        messages: [
          {
            type: "whisper" as const,
            destinationDeviceId: 1,
            destinationRegistrationId: recipient.registrationId,
            content: contentBase64,
          },
        ],
      };
      sockets[from]!.emit("send", request, (result) => {
        if (!result.ok) {
          done({ ok: false, error: describeError(result) });
          return;
        }
        const id = result.value.envelopes[0]?.id;
        done(
          id === undefined
            ? { ok: false, error: `no envelope id in ${JSON.stringify(result.value)}` }
            : { ok: true, id },
        );
      });
    },
    listen(next) {
      listener = next;
    },
    close: () => closeAll(sockets),
  };
}

function describeError(result: SocketResult<unknown>): string {
  return result.ok ? "ok" : `${result.status} ${result.error.code}: ${result.error.message}`;
}

function clientOptions(options: ConnectOptions): {
  transports: ["websocket"];
  forceNew: true;
  reconnection: false;
  timeout: number;
} {
  return { transports: ["websocket"], forceNew: true, reconnection: false, timeout: options.timeoutMs ?? 60_000 };
}

/**
 * Opens the sockets with bounded concurrency and resolves once every one has
 * received `queue-empty` (its stored queue is delivered).
 */
async function connectAll<S extends AnySocket>(options: ConnectOptions, create: (index: number) => S): Promise<S[]> {
  const sockets: S[] = new Array<S>(options.count);
  const concurrency = options.concurrency ?? 100;
  let next = 0;
  let connected = 0;
  const worker = async (): Promise<void> => {
    while (next < options.count) {
      const index = next++;
      const socket = create(index);
      sockets[index] = socket;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`device ${index}: no queue-empty within ${options.timeoutMs ?? 60_000} ms`)),
          options.timeoutMs ?? 60_000,
        );
        (socket as Socket).once("queue-empty", () => {
          clearTimeout(timer);
          resolve();
        });
        (socket as Socket).once("connect_error", (error: Error & { data?: unknown }) => {
          clearTimeout(timer);
          const data = error.data === undefined ? "" : ` ${JSON.stringify(error.data)}`;
          reject(new Error(`device ${index}: connect_error ${error.message}${data}`));
        });
        (socket as Socket).once("disconnect", (reason: string) => {
          clearTimeout(timer);
          reject(new Error(`device ${index}: disconnected before queue-empty (${reason})`));
        });
      });
      connected += 1;
      if (connected % 500 === 0) options.onProgress?.(connected);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, options.count) }, worker));
  } catch (error) {
    closeAll(sockets.filter((s) => s !== undefined));
    throw error;
  }
  return sockets;
}

function closeAll(sockets: readonly AnySocket[]): void {
  for (const socket of sockets) socket.disconnect();
}
