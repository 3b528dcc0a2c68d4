import type { IncomingMessage } from "node:http";
import type { Express } from "express";

/** The client's address of a raw HTTP request (e.g. a Socket.IO handshake). */
export type AddressOf = (req: IncomingMessage) => string;

/**
 * The client address of a request that did not go through Express (a
 * Socket.IO handshake), computed exactly as Express's `req.ip` is: the peer,
 * or the `X-Forwarded-For` entry the app's `trust proxy` setting selects.
 * One rule for REST and sockets, so per-address limits key alike on both.
 */
export function addressResolver(app: Express): AddressOf {
  const ip = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(app.request) as object, "ip")?.get;
  return (req) => {
    // Express's getter reads only these fields of the request (and the app's trust setting).
    const view = { app, headers: req.headers, socket: req.socket, connection: req.socket };
    const address = ip?.call(view) as string | undefined;
    return address ?? req.socket.remoteAddress ?? "";
  };
}
