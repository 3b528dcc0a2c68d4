import type { NextFunction, Request, RequestHandler, Response } from "express";
import type { Event as SocketPacket } from "socket.io";
import type { GroupCommitStats } from "../db/group-commit.js";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * The homeserver's Prometheus metrics, in a registry of its own (several
 * apps may live in one process). Labels are route templates, methods,
 * status classes, event and limit names: never an account, a username, a
 * device or an address. The hot path only increments counters; the queue
 * depth is counted from the database when scraped (one COUNT).
 */
export class Metrics {
  readonly registry = new Registry();
  /** Devices with an open Socket.IO connection to this node. */
  readonly connectedDevices: Gauge;
  /** Envelopes committed to a mailbox. */
  readonly envelopesAccepted: Counter;
  /** Envelopes deleted after their device acknowledged them. */
  readonly envelopesDelivered: Counter;
  /** Envelopes deleted unread by the expiry sweep. */
  readonly envelopesExpired: Counter;
  /** Sends answered from their idempotency record (a client's retry): nothing new stored. */
  readonly sendsReplayed: Counter;
  /** Requests refused by a rate limit, by limit name. */
  readonly rateLimitRefusals: Counter<"limit">;
  /**
   * Requests, connections and uploads refused to keep a resource bounded, by
   * reason (`body_too_large`, `mailbox_full`, `sealed_socket_cap`, …): never
   * an account, a device or an address. Rate limits have their own counter.
   */
  readonly refusals: Counter<"reason">;
  /**
   * Event-loop stalls over the threshold, by the plugin and hook that ran
   * (`none` when no plugin code was to blame: a stall of the server's own).
   */
  readonly eventLoopStalls: Counter<"plugin" | "hook">;
  /** Log lines the log destination could not take (disk full, closed pipe) and that were dropped. */
  readonly logLinesDropped: Counter;
  /**
   * Federation: signed requests from other servers, by result (`accepted`,
   * `peer_not_allowed`, or the `federation_unauthorized` reason). Never a server name.
   */
  readonly federationInbound: Counter<"result">;
  /**
   * Federation: requests this server sent, by result (`ok`: 2xx, `refused`:
   * 4xx, `failed`: unreachable or 5xx; `malformed`: also counted for a 2xx
   * whose body does not fit the schema).
   */
  readonly federationOutbound: Counter<"result">;
  /** Federation: peers' documents fetched, by result (`ok`, `failed`, `pin_mismatch`). */
  readonly federationDocumentFetches: Counter<"result">;
  /** Federation: peers whose document (or failure) this node remembers. */
  readonly federationPeersKnown: Gauge;
  /** Federation: relayed sends answered by the other server, by result (`delivered`, `refused`). */
  readonly federationRelayed: Counter<"result">;
  /** Federation: queued sends given up, by `remote-delivery-failed` reason. */
  readonly federationDeliveryFailures: Counter<"reason">;
  /** Federation: failed transactions to a destination server (each starts a backoff), by peer. */
  readonly federationRetries: Counter<"peer">;
  /** Federation: the current backoff of a destination server in seconds (0: none), by peer. */
  readonly federationBackoff: Gauge<"peer">;
  /** Federation: where the outbox depth per peer comes from (set by the app once the services exist). */
  outboxPeers: () => Promise<{ server: string; pending: number }[]> = async () => [];
  /** HTTP request latency by route template, method and status class. */
  readonly httpDuration: Histogram<"route" | "method" | "status">;

  /** Socket.IO event latency (request to acknowledgement) by event name. */
  readonly socketDuration: Histogram<"event">;

  /**
   * @param queueDepth counts the envelopes waiting in every mailbox (one COUNT query)
   * @param droppedLogLines the log destination's count of dropped lines so far (it exists before the metrics)
   * @param writerStats SQLite's storage worker: commits and the transactions they served so far
   */
  constructor(
    queueDepth: () => Promise<number>,
    droppedLogLines: () => number = () => 0,
    writerStats: () => GroupCommitStats | null = () => null,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: "zimchat_" });
    const registers = [this.registry];
    this.connectedDevices = new Gauge({
      name: "zimchat_connected_devices",
      help: "Devices connected to this node over Socket.IO",
      registers,
    });
    this.envelopesAccepted = new Counter({
      name: "zimchat_envelopes_accepted_total",
      help: "Envelopes committed to a mailbox",
      registers,
    });
    this.envelopesDelivered = new Counter({
      name: "zimchat_envelopes_delivered_total",
      help: "Envelopes acknowledged by their device and deleted",
      registers,
    });
    this.envelopesExpired = new Counter({
      name: "zimchat_envelopes_expired_total",
      help: "Envelopes deleted unread when their time to live ran out",
      registers,
    });
    this.sendsReplayed = new Counter({
      name: "zimchat_send_replays_total",
      help: "Retried sends answered with their first answer (same idempotency key), storing nothing",
      registers,
    });
    this.rateLimitRefusals = new Counter({
      name: "zimchat_rate_limit_refusals_total",
      help: "Requests refused by a rate limit",
      labelNames: ["limit"],
      registers,
    });
    this.refusals = new Counter({
      name: "zimchat_refusals_total",
      help: "Requests, connections and uploads refused to keep a resource bounded, by reason",
      labelNames: ["reason"],
      registers,
    });
    this.eventLoopStalls = new Counter({
      name: "zimchat_event_loop_stalls_total",
      help: "Event-loop stalls over the threshold, by the plugin and hook that ran (none: not a plugin)",
      labelNames: ["plugin", "hook"],
      registers,
    });
    let droppedSeen = 0;
    this.logLinesDropped = new Counter({
      name: "zimchat_log_lines_dropped_total",
      help: "Log lines dropped because the log destination failed (disk full, closed pipe)",
      registers,
      collect() {
        const dropped = droppedLogLines();
        if (dropped > droppedSeen) this.inc(dropped - droppedSeen);
        droppedSeen = dropped;
      },
    });
    this.federationInbound = new Counter({
      name: "zimchat_federation_inbound_requests_total",
      help: "Signed requests from other servers, by result: accepted, peer_not_allowed, or the federation_unauthorized reason",
      labelNames: ["result"],
      registers,
    });
    this.federationOutbound = new Counter({
      name: "zimchat_federation_outbound_requests_total",
      help: "Requests this server sent to other servers, by result: ok (2xx), refused (4xx), failed (unreachable, 5xx), malformed (a 2xx that does not fit)",
      labelNames: ["result"],
      registers,
    });
    this.federationDocumentFetches = new Counter({
      name: "zimchat_federation_document_fetches_total",
      help: "Other servers' signed documents fetched, by result: ok, failed, pin_mismatch (a pinned server presented another identity key)",
      labelNames: ["result"],
      registers,
    });
    this.federationPeersKnown = new Gauge({
      name: "zimchat_federation_peers_known",
      help: "Other servers whose document (or fetch failure) this node remembers (at most 10,000)",
      registers,
    });
    this.federationRelayed = new Counter({
      name: "zimchat_federation_relayed_sends_total",
      help: "Sends relayed to other servers that those servers answered, by result: delivered, refused",
      labelNames: ["result"],
      registers,
    });
    this.federationDeliveryFailures = new Counter({
      name: "zimchat_federation_delivery_failures_total",
      help: "Queued sends to other servers given up (remote-delivery-failed), by reason",
      labelNames: ["reason"],
      registers,
    });
    this.federationRetries = new Counter({
      name: "zimchat_federation_retries_total",
      help: "Failed transactions to another server, each followed by a backoff, by peer",
      labelNames: ["peer"],
      registers,
    });
    this.federationBackoff = new Gauge({
      name: "zimchat_federation_backoff_seconds",
      help: "The current wait before the next transaction to another server (0: none), by peer",
      labelNames: ["peer"],
      registers,
    });
    const outboxPeers = (): Promise<{ server: string; pending: number }[]> => this.outboxPeers();
    new Gauge({
      name: "zimchat_federation_outbox_depth",
      help: "Sends waiting in the federation outbox, by destination server (one query per scrape)",
      labelNames: ["peer"],
      registers,
      async collect() {
        this.reset();
        for (const { server, pending } of await outboxPeers()) this.set({ peer: server }, pending);
      },
    });
    this.httpDuration = new Histogram({
      name: "zimchat_http_request_duration_seconds",
      help: "HTTP request latency by route template, method and status class",
      labelNames: ["route", "method", "status"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.socketDuration = new Histogram({
      name: "zimchat_socket_event_duration_seconds",
      help: "Socket.IO event latency, from the event to its acknowledgement, by event name",
      labelNames: ["event"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    // Counters that follow a running total kept elsewhere: each scrape adds what it grew by.
    const following = (name: string, help: string, total: () => number | undefined): void => {
      let seen = 0;
      new Counter({
        name,
        help,
        registers,
        collect() {
          const now = total();
          if (now === undefined) return;
          if (now > seen) this.inc(now - seen);
          seen = now;
        },
      });
    };
    following(
      "zimchat_storage_commits_total",
      "SQLite storage worker: COMMITs of the writer (one fsync each); 0 on PostgreSQL",
      () => writerStats()?.commits,
    );
    following(
      "zimchat_storage_transactions_total",
      "SQLite storage worker: transactions and single writes committed (group commit: several per COMMIT)",
      () => writerStats()?.members,
    );
    // Scrapes that overlap share one COUNT query.
    let counting: Promise<number> | null = null;
    new Gauge({
      name: "zimchat_queue_depth",
      help: "Envelopes waiting in every mailbox (one COUNT query per scrape)",
      registers,
      async collect() {
        counting ??= queueDepth().finally(() => (counting = null));
        this.set(await counting);
      },
    });
  }

  /**
   * Express middleware timing every request. The label is the matched
   * route's template (`/v1/messages/:destination`), never the raw path;
   * requests that match no route are labelled `unmatched`.
   */
  httpTimer(): RequestHandler {
    return (req: Request, res: Response, next: NextFunction) => {
      const end = this.httpDuration.startTimer();
      res.on("finish", () => {
        const route: unknown = (req as { route?: { path?: unknown } }).route?.path;
        end({
          route: typeof route === "string" ? route : "unmatched",
          method: req.method,
          status: `${Math.floor(res.statusCode / 100)}xx`,
        });
      });
      next();
    };
  }

  /**
   * Socket.IO middleware (`socket.use`) timing each acknowledged event until
   * its acknowledgement. Event names come from the client: only `known`
   * ones become labels, anything else is `other`.
   */
  socketTimer(known: readonly string[]): (packet: SocketPacket, next: (error?: Error) => void) => void {
    return (packet, next) => {
      const ack: unknown = packet[packet.length - 1];
      if (typeof ack === "function") {
        const event = typeof packet[0] === "string" && known.includes(packet[0]) ? packet[0] : "other";
        const end = this.socketDuration.startTimer({ event });
        packet[packet.length - 1] = (...args: unknown[]): void => {
          end();
          (ack as (...args: unknown[]) => void)(...args);
        };
      }
      next();
    };
  }

  /** Counts one refusal of `reason` (a fixed name from the code, never client input). */
  refused(reason: string): void {
    this.refusals.inc({ reason });
  }

  /** `GET /metrics` in the Prometheus text format (behind {@link bearerAuth} when a metrics token is set). */
  handler(): RequestHandler {
    return (_req: Request, res: Response, next: NextFunction) => {
      this.registry.metrics().then((text) => {
        res.set("Content-Type", this.registry.contentType).send(text);
      }, next);
    };
  }
}
