import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { webSessionCookie } from "./api.js";

/** Why the daemon refused a request: the `reason` of its 403 body. */
export type ForbiddenReason = "token" | "host" | "origin" | "cookie";

/** The only addresses the daemon listens on (loopback IPv4; `localhost` is accepted in `Host` and `Origin`). */
export const webListenHost = "127.0.0.1";

/**
 * Refuses any listen address but 127.0.0.1 (and `localhost`, which means it):
 * a daemon holding keys never listens where another machine can reach it.
 * @throws Error naming what to change
 */
export function checkListenHost(host: string): string {
  if (host === webListenHost || host === "localhost") return webListenHost;
  throw new Error(
    `--host ${host} refused: the web client listens on 127.0.0.1 only (this daemon holds your private keys; ` +
      `another address would let other machines reach it). Leave --host out, or pass --host 127.0.0.1`,
  );
}

/** A fresh random secret: 32 bytes (256 bits), base64url. */
export function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** Compares two secrets in constant time (for equal lengths). */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The `Host` values a page served by this daemon sends (DNS rebinding sends another name). */
export function allowedHosts(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`];
}

/** The `Origin` values of this daemon's own pages. */
export function allowedOrigins(port: number): string[] {
  return allowedHosts(port).map((host) => `http://${host}`);
}

/** Whether a request's `Host` names this daemon. */
export function hostAllowed(request: IncomingMessage, port: number): boolean {
  const host = request.headers.host;
  return host !== undefined && allowedHosts(port).includes(host.toLowerCase());
}

/** Whether a request's `Origin` is this daemon's (absent counts as foreign: browsers send it on POST and upgrades). */
export function originAllowed(request: IncomingMessage, port: number): boolean {
  const origin = request.headers.origin;
  return origin !== undefined && allowedOrigins(port).includes(origin.toLowerCase());
}

/** The value of one cookie in a request, if sent. */
export function cookieValue(request: IncomingMessage, name: string): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const at = part.indexOf("=");
    if (at < 0) continue;
    if (part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

/**
 * The web sessions of one daemon run: ids handed out for the launch token,
 * kept in memory only (a restarted daemon has a new token and no sessions).
 */
export class WebSessions {
  private readonly ids = new Set<string>();

  /** A new session id (each token exchange gets its own). */
  create(): string {
    const id = newSecret();
    this.ids.add(id);
    return id;
  }

  /** Whether the request carries a session cookie this daemon handed out. */
  valid(request: IncomingMessage): boolean {
    const id = cookieValue(request, webSessionCookie);
    if (!id) return false;
    for (const known of this.ids) if (sameSecret(id, known)) return true;
    return false;
  }
}

/** The `Set-Cookie` value for a session id. */
export function sessionCookie(id: string): string {
  return `${webSessionCookie}=${id}; HttpOnly; SameSite=Strict; Path=/`;
}

/**
 * The Content-Security-Policy of every response: only this origin's scripts,
 * styles and connections (no inline scripts), images also as `data:` (QR
 * codes), never framed.
 */
export const contentSecurityPolicy =
  "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/** Headers on every response (never any `Access-Control-*`: no CORS). */
export function setSecurityHeaders(response: ServerResponse): void {
  response.setHeader("Content-Security-Policy", contentSecurityPolicy);
  response.setHeader("X-Content-Type-Options", "nosniff");
  response.setHeader("Referrer-Policy", "no-referrer");
  response.setHeader("X-Frame-Options", "DENY");
  response.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  response.setHeader("Cross-Origin-Resource-Policy", "same-origin");
}

/** The 403 body for a refusal. */
export function forbiddenBody(reason: ForbiddenReason): { error: "forbidden"; reason: ForbiddenReason } {
  return { error: "forbidden", reason };
}
