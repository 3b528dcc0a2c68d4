/**
 * Which homeserver URLs the SDK talks to: `https://`, or plain `http://`
 * only to this machine (loopback) unless the app says otherwise. Device
 * passwords travel in every request's Authorization header, and a network
 * attacker in the path of plain HTTP sees them and every envelope's
 * metadata.
 */
import { isIP } from "node:net";

/** Thrown for a server URL the SDK will not use; `code` says why. */
export class InsecureServerUrlError extends Error {
  override name = "InsecureServerUrlError";

  constructor(
    readonly url: string,
    readonly code: "insecure_http" | "unsupported_scheme" | "invalid_url",
    message: string,
  ) {
    super(message);
  }
}

/** Whether `hostname` (as `URL` gives it) is this machine: 127.0.0.0/8, ::1 (also IPv4-mapped), or localhost. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || /^::ffff:(127\.|7f[0-9a-f]{2}:)/.test(host);
  return false;
}

/**
 * Checks a homeserver URL before any request: `https:` always passes,
 * `http:` only to a loopback host or with `allowInsecureHttp`.
 * @throws InsecureServerUrlError otherwise
 */
export function checkServerUrl(url: string, options: { allowInsecureHttp?: boolean | undefined } = {}): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InsecureServerUrlError(
      url,
      "invalid_url",
      `${url} is not a URL: give the homeserver as https://host[:port]`,
    );
  }
  if (parsed.protocol === "https:") return;
  if (parsed.protocol !== "http:")
    throw new InsecureServerUrlError(
      url,
      "unsupported_scheme",
      `the homeserver URL must start with https:// (not ${parsed.protocol}//)`,
    );
  if (options.allowInsecureHttp || isLoopbackHost(parsed.hostname)) return;
  throw new InsecureServerUrlError(
    url,
    "insecure_http",
    `refusing plain http:// to ${parsed.host}: passwords and metadata would cross the network unencrypted. Use https:// (a reverse proxy terminating TLS in front of the homeserver), or allow it explicitly (allowInsecureHttp: true, --allow-insecure-http) on a network you trust`,
  );
}
