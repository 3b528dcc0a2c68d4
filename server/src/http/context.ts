import type { z } from "zod";
import type { RouteName, routes } from "@zimchat/protocol";
import type { DevicePrincipal } from "../services/account-service.js";

type Route<K extends RouteName> = (typeof routes)[K];
type Infer<S> = S extends z.ZodType ? z.output<S> : undefined;

/** What a route handler receives: validated params and body, and the caller. */
export interface RouteContext<K extends RouteName> {
  params: Route<K> extends { params: infer P } ? Infer<P> : Record<string, never>;
  body: Route<K> extends { body: infer B } ? Infer<B> : undefined;
  /**
   * The authenticated device: always for `auth: "device"`; for
   * `"device-or-access-key"` only when credentials were given.
   */
  principal: Route<K>["auth"] extends "device"
    ? DevicePrincipal
    : Route<K>["auth"] extends "device-or-access-key"
      ? DevicePrincipal | undefined
      : undefined;
  /** The `Unidentified-Access-Key` header (base64), on `"device-or-access-key"` routes called without credentials. */
  accessKey: string | undefined;
  /** The peer address, for rate limits only: never logged or stored. */
  clientAddress: string;
  /** The origin server whose signature was verified, on `auth: "server"` routes (federation). */
  origin: Route<K>["auth"] extends "server" ? string : undefined;
}

/** What a route handler returns: its success body (undefined for 204). */
export type RouteResult<K extends RouteName> = Route<K>["success"] extends { schema: infer S }
  ? z.input<S & z.ZodType>
  : void;

/** One handler per route in the protocol's route table. */
export type RouteHandlers = { [K in RouteName]: (ctx: RouteContext<K>) => Promise<RouteResult<K>> };

/**
 * Checks that run after authentication but before a route's body is read,
 * so that a request refused anyway is refused before its body is buffered
 * or parsed (e.g. a sealed send's access key, checked against the recipient
 * named in the path).
 */
export type RouteGuards = { [K in RouteName]?: (ctx: Omit<RouteContext<K>, "body">) => Promise<void> };
