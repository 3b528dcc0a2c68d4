/**
 * The baseline: a bare Socket.IO relay, run as a child process of the bench.
 * A client emits a payload addressed to another client's id; the relay
 * forwards it to that client's room, answers the sender, and answers the
 * recipient's acknowledgement. No validation, no storage, no authentication.
 *
 * Usage: `node relay-server.js --port 0 --host 127.0.0.1`. Prints one JSON
 * line with `"msg":"listening"` and the port when ready.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { Server } from "socket.io";
import type { RelayAuth, RelayClientToServerEvents, RelayServerToClientEvents } from "./relay-protocol.js";

/** Starts the relay on `host:port` and resolves with the port it listens on. */
export async function startRelay(host: string, port: number): Promise<{ port: number; close: () => Promise<void> }> {
  const http = createServer();
  const io = new Server<RelayClientToServerEvents, RelayServerToClientEvents>(http, {
    transports: ["websocket"],
    serveClient: false,
  });
  let nextId = 0;

  io.on("connection", (socket) => {
    const auth = socket.handshake.auth as Partial<RelayAuth>;
    if (typeof auth.id !== "string") {
      socket.disconnect(true);
      return;
    }
    void socket.join(auth.id);

    socket.on("send", (request, callback) => {
      const id = String(++nextId);
      io.to(request.to).emit("envelopes", [{ id, content: request.payload }]);
      callback({ ok: true, value: { id } });
    });
    socket.on("ack", (request, callback) => {
      callback({ ok: true, value: { deleted: request.ids.length } });
    });
    // Nothing is ever stored, so the queue is empty as soon as the client is in its room.
    socket.emit("queue-empty");
  });

  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(port, host, () => resolve());
  });
  return {
    port: (http.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => void io.close(() => resolve())),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { port: { type: "string", default: "0" }, host: { type: "string", default: "127.0.0.1" } },
  });
  const relay = await startRelay(values.host, Number(values.port));
  process.stdout.write(`${JSON.stringify({ level: 30, msg: "listening", port: relay.port })}\n`);
  const stop = (): void => void relay.close().then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

// Only when run as the entry point (not when imported for its exports).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
