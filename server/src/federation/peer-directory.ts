import { lookup } from "node:dns";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import type { KeyObject } from "node:crypto";
import ipaddr from "ipaddr.js";
import { Agent, request } from "undici";
import { serverDocumentPath, serverDocumentSchema, type ServerDocument } from "@zimchat/protocol";
import type { FederationMode } from "../config.js";
import type { Metrics } from "../metrics/metrics.js";
import { verifyServerDocument } from "./server-document.js";
import { identityFingerprint, publicKeyFromRaw } from "./signing-keys.js";

/** Limits of fetching peers' documents; each is a cap on what a hostile peer or request can make this server do. */
export const peerDirectoryLimits = {
  /** A document larger than this is refused unread. */
  maxDocumentBytes: 64 * 1024,
  /** An answer to a request (bundles of up to 127 devices, a transaction's results) larger than this is refused. */
  maxAnswerBytes: 1024 * 1024,
  /** Connect, headers and body, each. */
  fetchTimeoutMs: 5_000,
  /** A document is trusted at most this long, whatever its `validUntil`. */
  maxCacheMs: 7 * 86_400_000,
  /** A peer whose document could not be fetched is not asked again for this long. */
  failureCacheMs: 60_000,
  /** An unknown key id makes the document be fetched again, at most this often (a rotation). */
  refetchAfterMs: 60_000,
  /** Peers remembered at once (the oldest is forgotten first). */
  maxPeers: 10_000,
} as const;

/** Who this server federates with. */
export interface PeerPolicy {
  /** This server's own name. */
  self: string;
  mode: FederationMode;
  /** With `allowlist`: the only servers accepted. */
  allowed: readonly string[];
  /**
   * Pinned servers (any mode): name to the fingerprint its identity key
   * must have. A document with another identity key is refused, so the
   * server's requests are refused and nothing is sent to it.
   */
  pins?: Readonly<Record<string, string>>;
  /** Servers refused in every mode. */
  denied: readonly string[];
  /** Servers an admin blocked (stored; kept current by the federation service). */
  blocked?: ReadonlySet<string>;
  /**
   * Peers may be on loopback or private addresses and are reached over
   * plain HTTP: tests and closed networks only. Otherwise HTTPS, and a
   * name that resolves to a private, loopback or link-local address is
   * refused (SSRF guard).
   */
  insecure: boolean;
}

type Entry =
  { document: ServerDocument; fetchedAt: number; expiresAt: number } | { failedAt: number; seenFingerprint?: string };

/** A pinned peer's document whose identity key has another fingerprint than the pin. */
export class PinMismatchError extends Error {
  override name = "PinMismatchError";
  constructor(
    readonly server: string,
    readonly pinned: string,
    readonly seen: string,
  ) {
    super(`${server} presented identity key ${seen}, not the pinned ${pinned}`);
  }
}

/** Thrown instead of sending to a pinned peer whose document (with the pinned identity key) cannot be had. */
export class PeerUnverifiedError extends Error {
  override name = "PeerUnverifiedError";
  constructor(readonly server: string) {
    super(`${server} is pinned, and no document with the pinned identity key could be had`);
  }
}

/**
 * Peers' signed documents, fetched from `https://<server>/.well-known/zimchat/server`,
 * checked (the name it claims, its signature by its identity key, and that
 * key's fingerprint for a pinned peer) and cached until it expires.
 */
export class PeerDirectory {
  private readonly entries = new Map<string, Entry>();
  private readonly fetching = new Map<string, Promise<void>>();
  private readonly agent: Agent;
  /** Pin mismatches already reported (`server fingerprint`), so each is logged once. */
  private readonly reported = new Set<string>();
  /** Told once per pinned server and unexpected fingerprint (public keys only, never a secret). */
  onPinMismatch: ((mismatch: PinMismatchError) => void) | undefined;

  constructor(
    private readonly policy: PeerPolicy,
    private readonly metrics?: Metrics,
    private readonly now: () => number = Date.now,
  ) {
    this.agent = new Agent({
      connect: { lookup: guardedLookup(policy.insecure), timeout: peerDirectoryLimits.fetchTimeoutMs },
      headersTimeout: peerDirectoryLimits.fetchTimeoutMs,
      bodyTimeout: peerDirectoryLimits.fetchTimeoutMs,
    });
  }

  /** Whether requests from (and to) this server are accepted at all. */
  accepts(server: string): boolean {
    const { mode, allowed, denied, self, blocked } = this.policy;
    if (mode === "off" || server === self || denied.includes(server) || blocked?.has(server)) return false;
    return mode === "open" || allowed.includes(server);
  }

  /** Whether a peer is pinned by the fingerprint of its identity key. */
  pinned(server: string): boolean {
    return this.policy.pins?.[server] !== undefined;
  }

  /**
   * The identity-key fingerprint of a peer's cached, signature-verified
   * document, or, for a pinned peer whose document was refused, of the
   * identity key it presented; null when none is known.
   */
  fingerprintOf(server: string): string | null {
    const entry = this.entries.get(server);
    if (!entry) return null;
    if ("document" in entry) return identityFingerprint(Buffer.from(entry.document.identityKey, "base64"));
    return entry.seenFingerprint ?? null;
  }

  /** The base URL of a peer. */
  urlOf(server: string): string {
    return `${this.policy.insecure ? "http" : "https"}://${server}`;
  }

  /**
   * A peer's unexpired public key with this id, fetching its document when
   * it is not cached, or when the id is unknown and the cached document is
   * older than a minute (the peer rotated).
   * @returns null for a peer not accepted, unreachable, or without that key
   */
  async keyOf(server: string, keyId: string): Promise<KeyObject | null> {
    if (!this.accepts(server)) return null;
    let document = await this.document(server);
    let key = document?.keys.find((k) => k.id === keyId && k.validUntil > this.now());
    const entry = this.entries.get(server);
    if (!key && entry && "document" in entry && this.now() - entry.fetchedAt >= peerDirectoryLimits.refetchAfterMs) {
      this.entries.delete(server);
      document = await this.document(server);
      key = document?.keys.find((k) => k.id === keyId && k.validUntil > this.now());
    }
    return key ? publicKeyFromRaw(Buffer.from(key.publicKey, "base64")) : null;
  }

  /** A peer's verified document (cached), or null when it cannot be had now. */
  async document(server: string): Promise<ServerDocument | null> {
    const now = this.now();
    const entry = this.entries.get(server);
    if (entry && "document" in entry && entry.expiresAt > now) return entry.document;
    if (entry && "failedAt" in entry && now - entry.failedAt < peerDirectoryLimits.failureCacheMs) return null;
    let pending = this.fetching.get(server);
    if (!pending) {
      pending = this.refresh(server).finally(() => this.fetching.delete(server));
      this.fetching.set(server, pending);
    }
    await pending;
    const after = this.entries.get(server);
    return after && "document" in after ? after.document : null;
  }

  /**
   * Sends a request to a peer through the same guarded connections (SSRF
   * guard, timeouts). A pinned peer gets nothing until its document with
   * the pinned identity key is had.
   * @throws PeerUnverifiedError for a pinned peer without such a document; network errors
   */
  async send(
    server: string,
    path: string,
    init: { method: string; headers: Record<string, string>; body?: Uint8Array },
  ): Promise<{ status: number; body: unknown }> {
    await this.checkPin(server);
    const response = await request(`${this.urlOf(server)}${path}`, {
      dispatcher: this.agent,
      method: init.method as "GET",
      headers: init.headers,
      ...(init.body?.length && { body: init.body }),
    });
    const text = await readLimited(response.body, peerDirectoryLimits.maxAnswerBytes);
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    return { status: response.statusCode, body };
  }

  /**
   * A GET to a peer whose answer is streamed, not parsed (an attachment):
   * the same guarded connections and timeouts. The caller reads or destroys
   * the body.
   */
  async stream(
    server: string,
    path: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Readable }> {
    await this.checkPin(server);
    const response = await request(`${this.urlOf(server)}${path}`, { dispatcher: this.agent, method: "GET", headers });
    return { status: response.statusCode, headers: response.headers, body: response.body };
  }

  private async checkPin(server: string): Promise<void> {
    if (this.pinned(server) && !(await this.document(server))) throw new PeerUnverifiedError(server);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async refresh(server: string): Promise<void> {
    let entry: Entry;
    try {
      const document = await this.fetchDocument(server);
      const now = this.now();
      entry = {
        document,
        fetchedAt: now,
        expiresAt: Math.min(document.validUntil, now + peerDirectoryLimits.maxCacheMs),
      };
      this.metrics?.federationDocumentFetches.inc({ result: "ok" });
    } catch (error) {
      if (error instanceof PinMismatchError) {
        entry = { failedAt: this.now(), seenFingerprint: error.seen };
        this.metrics?.federationDocumentFetches.inc({ result: "pin_mismatch" });
        const key = `${server} ${error.seen}`;
        if (!this.reported.has(key)) {
          if (this.reported.size >= 1000) this.reported.clear();
          this.reported.add(key);
          this.onPinMismatch?.(error);
        }
      } else {
        entry = { failedAt: this.now() };
        this.metrics?.federationDocumentFetches.inc({ result: "failed" });
      }
    }
    this.entries.delete(server);
    this.entries.set(server, entry);
    if (this.entries.size > peerDirectoryLimits.maxPeers) this.entries.delete(this.entries.keys().next().value!);
    this.metrics?.federationPeersKnown.set(this.entries.size);
  }

  private async fetchDocument(server: string): Promise<ServerDocument> {
    const host = new URL(this.urlOf(server)).hostname.replace(/^\[|\]$/g, "");
    if (isIP(host) && !allowedAddress(host, this.policy.insecure)) throw new Error("private address");
    const response = await request(`${this.urlOf(server)}${serverDocumentPath}`, {
      dispatcher: this.agent,
      headers: { accept: "application/json" },
    });
    if (response.statusCode !== 200) {
      await response.body.dump();
      throw new Error(`status ${response.statusCode}`);
    }
    const text = await readLimited(response.body, peerDirectoryLimits.maxDocumentBytes);
    const document = serverDocumentSchema.parse(JSON.parse(text));
    if (document.server !== server) throw new Error("the document names another server");
    if (!verifyServerDocument(document, this.now())) throw new Error("bad document signature");
    const pin = this.policy.pins?.[server];
    if (pin !== undefined) {
      const seen = identityFingerprint(Buffer.from(document.identityKey, "base64"));
      if (seen !== pin) throw new PinMismatchError(server, pin, seen);
    }
    return document;
  }
}

/** A response body as text, refused (and the connection dropped) past `limit` bytes. */
async function readLimited(body: AsyncIterable<unknown> & { destroy(): unknown }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new Error("response too large");
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Whether an address may be connected to: public unicast only, unless insecure. */
function allowedAddress(address: string, insecure: boolean): boolean {
  if (insecure) return true;
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === "ipv6" && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  }
  return parsed.range() === "unicast";
}

/** A DNS lookup that refuses names resolving to private, loopback or link-local addresses (unless insecure). */
function guardedLookup(insecure: boolean): typeof lookup {
  return ((hostname: string, options: object, callback: (...args: unknown[]) => void) => {
    lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error);
      const list = addresses as { address: string; family: number }[];
      const refused = list.find((a) => !allowedAddress(a.address, insecure));
      if (refused || !list.length) return callback(new Error(`${hostname} resolves to a non-public address`));
      if ((options as { all?: boolean }).all) return callback(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  }) as typeof lookup;
}
