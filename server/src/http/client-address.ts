import type { IncomingMessage } from "node:http";
import type { Express } from "express";

/**
 * The client's address for any request on the app's HTTP server, by the
 * same rule as Express's `req.ip` (the app's `trust proxy` setting), so
 * Socket.IO connections and HTTP requests are keyed alike behind a reverse
 * proxy. Used only as a key of per-address limits: never logged or stored.
 */
export function clientAddressOf(app: Express): (request: IncomingMessage) => string {
  return (request) => {
    // Express's own `ip` getter, on a view of this request with the app attached.
    const view = Object.create(app.request, {
      headers: { value: request.headers },
      socket: { value: request.socket },
      connection: { value: request.socket },
    }) as { ip?: string };
    return view.ip ?? request.socket.remoteAddress ?? "";
  };
}
