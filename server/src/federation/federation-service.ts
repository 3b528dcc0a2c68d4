import {
  preKeyBundleResponseSchema,
  usernameLookupResponseSchema,
  type FederatedSend,
  type FederationPeer,
  type FederationTransaction,
  type FederationTransactionResponse,
  type OutgoingMessage,
  type PreKeyBundleResponse,
  type RemoteSendResponse,
  type ServerDocument,
} from "@zimchat/protocol";
import type { Readable } from "node:stream";
import type { z } from "zod";
import type { ServerConfig } from "../config.js";
import type { DevicePrincipal } from "../services/account-service.js";
import { HttpError } from "../errors.js";
import type { AccountStore } from "../stores/account-store.js";
import type { RateLimiter } from "../services/rate-limiter.js";
import type { Metrics } from "../metrics/metrics.js";
import type { MailboxService } from "../services/mailbox-service.js";
import type { GroupRelay, SealedSenderService } from "../services/sealed-sender-service.js";
import type { OutboxStore } from "../stores/outbox-store.js";
import { Outbox, type Exclusive } from "./outbox.js";
import { PeerDirectory } from "./peer-directory.js";
import {
  digestMatches,
  signRequest,
  verifyRequest,
  type IncomingRequest,
  type SignatureRefusal,
} from "./request-signing.js";
import { ServerDocumentService } from "./server-document.js";

const refusalText: Record<SignatureRefusal, string> = {
  unsigned:
    "The request is not signed by a server (Signature, Signature-Input, x-zimchat-origin, x-zimchat-destination)",
  wrong_destination: "The request is addressed to another server",
  bad_digest: "The Content-Digest does not match the body",
  unknown_key: "The signing key is not one the origin server publishes",
  bad_signature: "The signature does not verify, or it has expired",
};

/**
 * Federation on this server: its signed document, the peers it accepts
 * and their keys, the check of every signed request, and what peers may
 * ask.
 */
export class FederationService {
  readonly document: ServerDocumentService;
  readonly peers: PeerDirectory;
  /** Sends from local devices to other servers (see {@link Outbox}). */
  readonly outbox: Outbox;
  /** Servers an admin blocked, as last read from the database (every minute, and at once on this node). */
  private readonly blocked = new Set<string>();
  private blockedRefresh: NodeJS.Timeout | null = null;

  constructor(
    private readonly config: ServerConfig,
    private readonly accounts: AccountStore,
    private readonly limiter: RateLimiter,
    trustRoot: () => string,
    private readonly mailbox: MailboxService,
    private readonly sealed: SealedSenderService,
    private readonly outboxStore: OutboxStore,
    private readonly metrics?: Metrics,
    exclusive?: Exclusive,
  ) {
    this.document = new ServerDocumentService(config.dataDir, config.serverName, trustRoot);
    this.peers = new PeerDirectory(
      {
        self: config.serverName,
        mode: config.federation,
        allowed: config.federationAllow,
        pins: config.federationPins,
        denied: config.federationDeny,
        insecure: config.federationInsecurePeers,
        blocked: this.blocked,
      },
      metrics,
    );
    this.outbox = new Outbox(
      outboxStore,
      (server, txnId, sends) => this.request(server, "PUT", `/federation/v1/send/${txnId}`, { sends }),
      config.envelopeTtlMs,
      config.federationOutboxMaxPerPeer,
      metrics,
      exclusive,
    );
  }

  /**
   * Loads the blocked servers (and again every minute: another node may
   * block one) and starts relaying the sends a previous run left in the
   * outbox (federation on only).
   */
  async start(): Promise<void> {
    if (!this.enabled) return;
    await this.refreshBlocked();
    this.blockedRefresh = setInterval(() => void this.refreshBlocked().catch(() => undefined), 60_000);
    this.blockedRefresh.unref();
    await this.outbox.start();
  }

  private async refreshBlocked(): Promise<void> {
    const blocked = await this.outboxStore.blocked();
    this.blocked.clear();
    for (const server of blocked) this.blocked.add(server);
  }

  /** Blocks a server: refused both ways from now on (on this node at once, on the others within a minute). */
  async block(server: string): Promise<void> {
    await this.outboxStore.setBlocked(server, true);
    this.blocked.add(server);
  }

  /** Unblocks a server; the configured policy still applies. Sends queued for it go now. */
  async unblock(server: string): Promise<void> {
    await this.outboxStore.setBlocked(server, false);
    this.blocked.delete(server);
    this.outbox.heardFrom(server);
  }

  /**
   * Every server relayed to, blocked or pinned: outbox depth, failures in a
   * row, next attempt, blocked, whether it is pinned and the fingerprint of
   * its identity key as this node last saw it.
   */
  async listPeers(): Promise<FederationPeer[]> {
    const [peers, blocked] = await Promise.all([this.outbox.peers(), this.outboxStore.blocked()]);
    const rows = new Map(peers.map((p) => [p.server, { ...p, blocked: blocked.includes(p.server) }]));
    for (const server of [...blocked, ...Object.keys(this.config.federationPins)]) {
      if (!rows.has(server)) {
        rows.set(server, { server, pending: 0, failures: 0, nextAttemptAt: 0, blocked: blocked.includes(server) });
      }
    }
    return [...rows.values()]
      .map((row) => ({
        ...row,
        pinned: this.peers.pinned(row.server),
        fingerprint: this.peers.fingerprintOf(row.server),
      }))
      .sort((a, b) => (a.server < b.server ? -1 : a.server > b.server ? 1 : 0));
  }

  /** Whether federation is on. */
  get enabled(): boolean {
    return this.config.federation !== "off";
  }

  /** This server's signed document. @throws HttpError 404 while federation is off */
  serverDocument() {
    if (!this.enabled) throw new HttpError("not_found", "Federation is off on this server");
    return this.document.document();
  }

  /**
   * Checks a signed federation request: addressed to this server, from a
   * server it accepts, signed by one of that server's published keys.
   * @returns the origin server
   * @throws HttpError 404 while federation is off, 403 `peer_not_allowed`, 401 `federation_unauthorized`
   */
  async authenticate(request: IncomingRequest): Promise<string> {
    if (!this.enabled) throw new HttpError("not_found", "Federation is off on this server");
    const claimed = request.headers["x-zimchat-origin"];
    if (typeof claimed === "string" && !this.peers.accepts(claimed)) {
      this.metrics?.federationInbound.inc({ result: "peer_not_allowed" });
      throw new HttpError("peer_not_allowed", "This server does not federate with that server");
    }
    const result = await verifyRequest(request, this.config.serverName, (origin, keyId) =>
      this.peers.keyOf(origin, keyId),
    );
    if ("refused" in result) {
      this.metrics?.federationInbound.inc({ result: result.refused });
      throw new HttpError("federation_unauthorized", refusalText[result.refused], { reason: result.refused });
    }
    this.metrics?.federationInbound.inc({ result: "accepted" });
    // Heard from: sends waiting out a backoff for that server go now.
    this.outbox.heardFrom(result.origin);
    return result.origin;
  }

  /**
   * Fetches an attachment stored on another server for a local user, as a
   * stream (the id is the capability; the user's `Range` is passed on).
   * The answer is bounded by this server's own attachment size limit.
   * @throws HttpError 404, 416 (with Content-Range) as the other server answered; 502 `peer_unavailable`;
   *   413 `body_too_large` for a blob larger than this server accepts
   */
  async remoteAttachment(
    principal: DevicePrincipal,
    server: string,
    id: string,
    range: string | undefined,
  ): Promise<{ status: number; headers: Record<string, string>; body: Readable }> {
    if (server === this.config.serverName) {
      throw new HttpError("invalid_request", "That is this server: use the local route");
    }
    if (!this.enabled || !this.peers.accepts(server)) {
      throw new HttpError("peer_not_allowed", "This server does not federate with that server");
    }
    await this.limiter.consume("remoteAttachmentDownload", principal.accountId);
    const path = `/federation/v1/attachments/${encodeURIComponent(id)}`;
    const headers = await this.signedHeaders(server, "GET", path, undefined);
    if (range !== undefined && range.length <= 200) headers["range"] = range;
    let answer;
    try {
      answer = await this.peers.stream(server, path, headers);
    } catch {
      this.metrics?.federationOutbound.inc({ result: "failed" });
      throw new HttpError("peer_unavailable", "The other server could not be reached");
    }
    const { status, body } = answer;
    const single = (name: string): string | undefined => {
      const value = answer.headers[name];
      return typeof value === "string" ? value : undefined;
    };
    this.metrics?.federationOutbound.inc({ result: status < 300 ? "ok" : status < 500 ? "refused" : "failed" });
    if (status === 200 || status === 206) {
      const length = Number(single("content-length"));
      if (!Number.isSafeInteger(length) || length > this.config.attachmentMaxBytes) {
        body.destroy();
        throw new HttpError(
          "body_too_large",
          "The attachment is larger than this server accepts, or of no stated size",
        );
      }
      const out: Record<string, string> = { "content-length": String(length) };
      const contentRange = single("content-range");
      if (status === 206 && contentRange && contentRange.length <= 100) out["content-range"] = contentRange;
      return { status, headers: out, body };
    }
    body.resume();
    if (status === 404) throw new HttpError("not_found", "No such attachment on that server (unknown or expired)");
    if (status === 416) {
      const contentRange = single("content-range");
      throw new HttpError(
        "range_not_satisfiable",
        "The requested range is outside the attachment",
        {},
        contentRange && contentRange.length <= 100 ? { "Content-Range": contentRange } : {},
      );
    }
    if (status === 429)
      throw new HttpError(
        "rate_limited",
        "That server limits this server's downloads",
        { retryAfterSeconds: 60 },
        { "Retry-After": "60" },
      );
    throw new HttpError("peer_unavailable", `The other server answered ${status}`);
  }

  /** Counts a peer's attachment download against its budget (after its signature checked out). */
  async admitAttachmentDownload(origin: string): Promise<void> {
    await this.limiter.consume("federationAttachmentDownload", origin);
  }

  /**
   * Checks the body of an authenticated request against its signed
   * `Content-Digest` (read after the signature checked out, so a stranger's
   * body is never read).
   * @throws HttpError 401 `federation_unauthorized` (`bad_digest`)
   */
  checkBody(headers: IncomingRequest["headers"], body: Uint8Array): void {
    if (digestMatches(headers["content-digest"], body)) return;
    this.metrics?.federationInbound.inc({ result: "bad_digest" });
    throw new HttpError("federation_unauthorized", refusalText.bad_digest, { reason: "bad_digest" });
  }

  /** A local user asks another server for the account id of a username there (the user's own lookup budget). */
  async remoteLookupUsername(principal: DevicePrincipal, server: string, username: string): Promise<{ uuid: string }> {
    await this.limiter.consume("usernameLookup", principal.accountId);
    return this.forward(
      server,
      `/federation/v1/accounts/username/${encodeURIComponent(username)}`,
      usernameLookupResponseSchema,
    );
  }

  /**
   * Another server's signed document, as this server verified it (cached):
   * a client checks sender certificates of that server's users against its
   * `trustRoot`. Counted against the user's lookup budget.
   */
  async remoteDocument(principal: DevicePrincipal, server: string): Promise<ServerDocument> {
    if (server === this.config.serverName) return this.serverDocument();
    if (!this.enabled || !this.peers.accepts(server)) {
      throw new HttpError("peer_not_allowed", "This server does not federate with that server");
    }
    await this.limiter.consume("usernameLookup", principal.accountId);
    const document = await this.peers.document(server);
    if (!document) throw new HttpError("peer_unavailable", "The other server's document could not be had");
    return document;
  }

  /** A local user fetches pre-key bundles of an account on another server (the user's own bundle budget). */
  async remotePreKeyBundle(
    principal: DevicePrincipal,
    server: string,
    uuid: string,
    deviceId: number | "*",
  ): Promise<PreKeyBundleResponse> {
    await this.limiter.consume("preKeyBundle", `${principal.accountId}:${uuid}@${server}`);
    return this.forward(server, `/federation/v1/keys/${uuid}/${deviceId}`, preKeyBundleResponseSchema);
  }

  /**
   * A signed GET to a peer on behalf of a local user, its answer checked:
   * a success that fits the schema, the peer's 404 and 429 as our own;
   * anything else (unreachable, a malformed answer) is 502 `peer_unavailable`.
   */
  private async forward<T>(server: string, path: string, schema: z.ZodType<T>): Promise<T> {
    if (server === this.config.serverName) {
      throw new HttpError("invalid_request", "That is this server: use the local route");
    }
    let answer: { status: number; body: unknown };
    try {
      answer = await this.request(server, "GET", path);
    } catch (error) {
      if (error instanceof HttpError) throw error;
      throw new HttpError("peer_unavailable", "The other server could not be reached");
    }
    const code = (answer.body as { code?: unknown } | null)?.code;
    if (answer.status === 200) {
      const parsed = schema.safeParse(answer.body);
      if (parsed.success) return parsed.data;
      // Counted as `ok` when it arrived: a 2xx whose body does not fit is counted again here.
      this.metrics?.federationOutbound.inc({ result: "malformed" });
      throw new HttpError("peer_unavailable", "The other server's answer is malformed");
    }
    if (answer.status === 404 && code === "not_found") throw new HttpError("not_found", "Not found on that server");
    if (answer.status === 429) {
      const after = Number((answer.body as { retryAfterSeconds?: unknown } | null)?.retryAfterSeconds);
      const seconds = Number.isInteger(after) && after > 0 && after <= 3600 ? after : 60;
      throw new HttpError(
        "rate_limited",
        "That server limits this server's requests",
        { retryAfterSeconds: seconds },
        {
          "Retry-After": String(seconds),
        },
      );
    }
    throw new HttpError("peer_unavailable", `The other server answered ${answer.status}`);
  }

  /**
   * A local device (or, sealed, a client with the recipient's access key)
   * sends to an account on another server: relayed through the outbox.
   * The content is checked here first, so this server never relays
   * anything but libsignal messages.
   */
  async relay(
    principal: DevicePrincipal | null,
    server: string,
    destination: string,
    messages: OutgoingMessage[],
    context: { accessKey?: string | undefined; clientAddress: string; idempotencyKey?: string | undefined },
  ): Promise<RemoteSendResponse> {
    if (server === this.config.serverName) {
      throw new HttpError("invalid_request", "That is this server: use the local route");
    }
    if (!this.enabled || !this.peers.accepts(server)) {
      throw new HttpError("peer_not_allowed", "This server does not federate with that server");
    }
    if (principal) await this.limiter.consume("send", `${principal.accountId}.${principal.deviceId}`);
    else {
      if (messages.some((m) => m.type !== "sealed")) {
        throw new HttpError("invalid_request", "Without credentials, every message must be sealed");
      }
      // Only the recipient's server can check the access key: limited here per recipient and client address.
      await this.limiter.consume("sealedSend", `${destination}@${server}:${context.clientAddress}`);
    }
    this.mailbox.checkMessages(messages);
    return this.outbox.send({
      sender: principal,
      server,
      destination,
      messages,
      accessKey: context.accessKey,
      idempotencyKey: context.idempotencyKey,
    });
  }

  /**
   * Relays the remote recipients of a multi-recipient (group) send: each
   * gets only its own sealed message, sent to its own server, so no server
   * learns the members on the others. Each is answered on its own, like a
   * single send (refusals included); undefined while federation is off.
   */
  get relayGroup(): GroupRelay | undefined {
    if (!this.enabled) return undefined;
    return (sender, recipients, source, idempotencyKey) =>
      Promise.all(
        recipients.map(async (r) => {
          try {
            if (r.server === this.config.serverName) {
              throw new HttpError("invalid_request", "A remote recipient names this server");
            }
            if (!this.peers.accepts(r.server)) {
              throw new HttpError("peer_not_allowed", "This server does not federate with that server");
            }
            if (!sender) await this.limiter.consume("sealedSend", `${r.uuid}@${r.server}:${source}`);
            this.mailbox.checkMessages(r.messages);
            const sent = await this.outbox.send({
              sender,
              server: r.server,
              destination: r.uuid,
              messages: r.messages,
              accessKey: r.accessKey,
              idempotencyKey,
            });
            return {
              uuid: r.uuid,
              server: r.server,
              status: 200,
              id: sent.id,
              queued: sent.queued,
              ...(sent.envelopes && { envelopes: sent.envelopes }),
            };
          } catch (error) {
            if (!(error instanceof HttpError)) throw error;
            return { uuid: r.uuid, server: r.server, status: error.status, error: error.toBody() };
          }
        }),
      );
  }

  /**
   * A transaction of sends from another server: each is checked and stored
   * like a local send (a sealed one against the recipient's access key) and
   * answered on its own. Rate limited per origin server, one point per send.
   * A failure that is not a refusal (the database) fails the whole
   * transaction, which the origin retries: sends it had committed are then
   * answered from their idempotency records.
   */
  async receive(origin: string, transaction: FederationTransaction): Promise<FederationTransactionResponse> {
    await this.limiter.consume("federationSend", origin, transaction.sends.length);
    const results = await Promise.all(
      transaction.sends.map(async (send: FederatedSend) => {
        try {
          if (!send.source) await this.sealed.authorize(send.destination, send.accessKey);
          const sender = send.source ? { accountId: send.source.uuid, deviceId: send.source.deviceId } : null;
          const response = await this.mailbox.receiveRelayed(origin, send.id, sender, send.destination, send.messages);
          return { id: send.id, status: 200, response };
        } catch (error) {
          if (!(error instanceof HttpError)) throw error;
          return { id: send.id, status: error.status, error: error.toBody() };
        }
      }),
    );
    return { results };
  }

  /** The account id of a local username, for a peer (rate limited per origin server). */
  async lookupUsername(origin: string, username: string): Promise<{ uuid: string }> {
    await this.limiter.consume("federationUsernameLookup", origin);
    const uuid = await this.accounts.idForUsername(username);
    if (!uuid) throw new HttpError("not_found", "No account has that username");
    return { uuid };
  }

  /**
   * A signed request to another server (the newest key signs).
   * @throws HttpError 403 `peer_not_allowed` for a server this one does not federate with
   */
  async request(
    destination: string,
    method: "GET" | "PUT",
    path: string,
    json?: unknown,
  ): Promise<{ status: number; body: unknown }> {
    if (!this.enabled || !this.peers.accepts(destination)) {
      throw new HttpError("peer_not_allowed", "This server does not federate with that server");
    }
    const body = json === undefined ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(json));
    const headers = await this.signedHeaders(destination, method, path, body);
    try {
      const answer = await this.peers.send(destination, path, { method, headers, body });
      const result = answer.status < 300 ? "ok" : answer.status < 500 ? "refused" : "failed";
      this.metrics?.federationOutbound.inc({ result });
      return answer;
    } catch (error) {
      this.metrics?.federationOutbound.inc({ result: "failed" });
      throw error;
    }
  }

  /** The headers that sign a request to `destination` with this server's newest key (and its JSON body's type). */
  private async signedHeaders(
    destination: string,
    method: string,
    path: string,
    body: Uint8Array | undefined,
  ): Promise<Record<string, string>> {
    const headers = await signRequest(
      {
        method,
        url: `${this.peers.urlOf(destination)}${path}`,
        body: body ?? new Uint8Array(),
        origin: this.config.serverName,
        destination,
      },
      this.document.keys()[0]!,
    );
    if (body?.length) headers["content-type"] = "application/json";
    return headers;
  }

  async close(): Promise<void> {
    if (this.blockedRefresh) clearInterval(this.blockedRefresh);
    this.outbox.close();
    await this.peers.close();
  }
}
