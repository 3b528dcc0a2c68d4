import { resolve } from "node:path";
import { limits } from "@zimchat/protocol";
import type { ServerPlugin } from "@zimchat/plugin-sdk/server";
import { defaultConnectionLimits, type ConnectionLimits } from "./gateway/connection-limits.js";

/** Who may create an account. */
export type RegistrationMode = "open" | "invite" | "closed";

/** How hard SQLite syncs a commit to disk (see docs/configuration.md for the choice). */
export type SqliteSynchronous = "FULL" | "NORMAL";

/** Token-bucket rate limits: `points` per `durationSeconds`. */
export interface RateLimit {
  points: number;
  durationSeconds: number;
}

/** Every rate limit the homeserver applies. */
export interface RateLimits {
  /** Registrations per client address (kept in memory only, never logged). */
  register: RateLimit;
  /** Username lookups per requesting account. */
  usernameLookup: RateLimit;
  federationUsernameLookup: RateLimit;
  /** Pre-key bundle fetches per requesting account and target account. */
  preKeyBundle: RateLimit;
  /** Envelope sends per sending device. */
  send: RateLimit;
  /** Sealed-sender sends without credentials, per recipient account (kept in memory only). */
  sealedSend: RateLimit;
  /** Linking codes created per client address (kept in memory only, never logged). */
  linkCode: RateLimit;
  /**
   * One-time pre-keys handed out per target device, whoever asks. Beyond it,
   * bundles carry no one-time EC key and the last-resort Kyber key (never a 429).
   */
  preKeyClaimsPerTarget: RateLimit;
  /** One-time pre-keys one requesting account may claim, all targets together (same degradation). */
  preKeyClaimsPerRequester: RateLimit;
  federationPreKeyBundle: RateLimit;
  federationPreKeyClaims: RateLimit;
  /** Sends one origin server relays (federation), one point per send of a transaction. */
  federationSend: RateLimit;
  /** Attachment downloads one origin server makes for its users (federation). */
  federationAttachmentDownload: RateLimit;
  /** Downloads of attachments on other servers through this one, per account (federation). */
  remoteAttachmentDownload: RateLimit;
  /** Failed authentications per client address (only failures count). */
  failedAuthPerAddress: RateLimit;
  /** Failed authentications per client address and device username (only failures count). */
  failedAuthPerAddressAndDevice: RateLimit;
}

/**
 * One server plugin to load, as listed in the config file's `plugins` array.
 *
 * @example
 * { use: "@zimchat/plugins/moderation", config: { sendsPerHour: 500 } }
 * { use: "./my-plugin.js" }            // a path: relative to the config file (or the working directory)
 * { use: myPlugin, config: {} }        // a ServerPlugin object (tests, embedding)
 */
export interface PluginSpec {
  /**
   * An npm package name or a path to an ES module whose default export (or
   * export named `plugin`) is a `ServerPlugin`; or the plugin object itself.
   */
  use: string | ServerPlugin;
  /** The plugin's config, validated by its own `configSchema`. @default {} */
  config?: unknown;
}

/** The homeserver's options. Only the CLI reads the environment; libraries are handed this. */
/** A pinned peer's fingerprint: `sha256:` and the 64 lowercase hex digits of its identity key's SHA-256. */
export const federationPinPattern = /^sha256:[0-9a-f]{64}$/;

/** Whether and with whom a server federates. */
export type FederationMode = "off" | "allowlist" | "open";

export interface ServerConfig {
  /** This homeserver's DNS name, as in `@user:serverName`. @default "localhost" */
  serverName: string;
  /** @default 8080 */
  port: number;
  /** @default "0.0.0.0" */
  host: string;
  /** SQLite database, keys and files live here. @default "./data" */
  dataDir: string;
  /**
   * `file:/path/to.db` (SQLite) or `postgresql://...` (PostgreSQL).
   * @default `file:<dataDir>/zimchat.db`
   */
  databaseUrl: string;
  /** @default "invite" */
  registration: RegistrationMode;
  /** Queued envelopes older than this are deleted unread. @default 30 days */
  envelopeTtlMs: number;
  /**
   * Envelopes queued for one recipient device; a send that would exceed it
   * is refused with 507 `mailbox_full`. @default 50,000
   */
  mailboxMaxEnvelopes: number;
  /**
   * Bytes queued for one recipient device (as delivered), refused like {@link mailboxMaxEnvelopes}.
   * @default 256 MiB
   */
  mailboxMaxBytes: number;
  /** How often expired envelopes are swept. @default 60 s */
  expirySweepMs: number;
  /** @default "FULL" */
  sqliteSynchronous: SqliteSynchronous;
  /** `false` turns every limit off (benchmarks). */
  rateLimits: RateLimits | false;
  /** pino level. @default "info" */
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Bytes of one encrypted attachment upload (413 `body_too_large` above). @default 100 MiB */
  attachmentMaxBytes: number;
  /** Bytes of one account's unexpired attachments together (413 `quota_exceeded` above). @default 1 GiB */
  attachmentQuotaBytes: number;
  /** Attachments are deleted this long after their upload. @default 30 days */
  attachmentTtlMs: number;
  /** Uploads one account may have in flight at once, across nodes (429 `too_many_uploads` above). @default 4 */
  attachmentMaxConcurrentUploads: number;
  /**
   * Unexpired attachments one account may hold, zero-byte ones included (429 `too_many_attachments` above).
   * @default 5000
   */
  attachmentMaxCount: number;
  /**
   * An upload that sends no byte for this long is cut off (408 `upload_timeout`; its partial file and reservation go).
   * @default 30 s
   */
  attachmentUploadIdleMs: number;
  /**
   * After the first idle window, an upload must average at least this many bytes per second, or it is cut off like an
   * idle one (0: no minimum).
   * @default 2048
   */
  attachmentMinUploadBytesPerSecond: number;
  /** How long graceful shutdown waits for in-flight work. @default 10 s */
  shutdownGraceMs: number;
  /**
   * Lifetime of a sealed-sender certificate from `GET /v1/certificate/delivery` (1 minute to 30 days).
   * @default 24 h
   */
  senderCertificateTtlMs: number;
  /** Devices one account may have, the primary included (1..127). @default 6 */
  maxDevicesPerAccount: number;
  /**
   * How long a device-linking code stays valid; at most the protocol's
   * `limits.linkCodeTtlSeconds`, which clients rely on. @default 10 minutes
   */
  linkCodeTtlMs: number;
  /** Server plugins, loaded in this order at start-up. @default [] */
  plugins: PluginSpec[];
  /**
   * Time budget of one plugin for one hook call (for a send, all of its
   * recipients together) and for one plugin route request. @default 1000
   */
  pluginHookTimeoutMs: number;
  /** Time budget of one plugin's `setup`, `start` and `stop`. @default 30 s */
  pluginStartTimeoutMs: number;
  /**
   * An event-loop stall at least this long is logged (with the plugin and
   * hook that ran, if any) and counted in `zimchat_event_loop_stalls_total`;
   * 0 turns the monitor off. @default 1000
   */
  eventLoopStallMs: number;
  /**
   * SQLite: checkpoint and truncate the write-ahead log this often, so
   * acknowledged (deleted) envelopes leave the WAL and the database file
   * within seconds; 0 leaves it to SQLite's auto-checkpoint. @default 2000
   */
  sqliteCheckpointMs: number;
  /**
   * SQLite: run every statement in the storage worker thread, so commits
   * and their fsyncs never hold up the event loop; off runs them on the
   * event loop (to measure what the worker buys). @default true
   */
  sqliteWorker: boolean;
  /**
   * Federation with other homeservers: `off` (the default: the server
   * publishes no federation document), `allowlist` or `open`.
   */
  federation: FederationMode;
  /** With `allowlist`: the servers accepted. */
  federationAllow: string[];
  /**
   * Pinned peers: server name to the fingerprint of its identity key
   * (`sha256:` and 64 lowercase hex digits). A pinned peer's document is
   * refused unless its identity key has that fingerprint, in `allowlist`
   * and `open` mode alike. From `--federation-allow name=sha256:<hex>`. @default {}
   */
  federationPins: Record<string, string>;
  /** Servers refused in every mode. */
  federationDeny: string[];
  /**
   * Peers may be on loopback or private addresses and are reached over
   * plain HTTP (tests and closed networks only). @default false
   */
  federationInsecurePeers: boolean;
  /** Sends that may wait in the federation outbox for one destination server (507 `outbox_full` beyond). */
  federationOutboxMaxPerPeer: number;
  /**
   * Redis (`redis://` or `rediss://`). Set: Socket.IO Redis adapter, rate
   * limits in Redis, cluster-wide job locks. Unset: one node, all in memory. @default undefined
   */
  redisUrl?: string | undefined;
  /** Prefix of every Redis key and channel, so several homeservers can share one Redis. @default "zimchat" */
  redisPrefix: string;
  /** Where encrypted attachment blobs live (a shared directory for several nodes). @default `<dataDir>/attachments` */
  attachmentsDir: string;
  /** Bearer token of the admin HTTP API; unset turns the admin API off. @default undefined */
  adminToken?: string | undefined;
  /**
   * Which reverse proxies to believe about the client's address (Express's
   * `trust proxy`): `false` uses the TCP peer; a number of hops, or a list of
   * addresses/subnets (`loopback`, `10.0.0.0/8`, …) whose `X-Forwarded-For`
   * is taken. The address only keys the per-address rate limits
   * (registration, linking codes); it is never logged or stored. @default false
   */
  trustProxy: false | number | string[];
  /** Serve Prometheus metrics at `GET /metrics`. @default true */
  metrics: boolean;
  /** When set, `GET /metrics` needs `Authorization: Bearer <token>`. @default undefined */
  metricsToken?: string | undefined;
  /**
   * Caps on handshakes in progress and credential-free `/sealed` sockets, and their timeouts.
   * @default {@link defaultConnectionLimits}
   */
  connectionLimits: ConnectionLimits;
}

/** The default rate limits. */
export const defaultRateLimits: RateLimits = {
  register: { points: 10, durationSeconds: 3600 },
  usernameLookup: { points: 100, durationSeconds: 60 },
  federationUsernameLookup: { points: 300, durationSeconds: 60 },
  preKeyBundle: { points: 60, durationSeconds: 60 },
  send: { points: 200, durationSeconds: 1 },
  sealedSend: { points: 600, durationSeconds: 60 },
  linkCode: { points: 10, durationSeconds: 600 },
  preKeyClaimsPerTarget: { points: 50, durationSeconds: 3600 },
  preKeyClaimsPerRequester: { points: 300, durationSeconds: 3600 },
  federationPreKeyBundle: { points: 120, durationSeconds: 60 },
  federationPreKeyClaims: { points: 600, durationSeconds: 3600 },
  federationSend: { points: 6000, durationSeconds: 60 },
  federationAttachmentDownload: { points: 600, durationSeconds: 60 },
  remoteAttachmentDownload: { points: 120, durationSeconds: 60 },
  failedAuthPerAddress: { points: 100, durationSeconds: 600 },
  failedAuthPerAddressAndDevice: { points: 10, durationSeconds: 600 },
};

/** Thrown at start-up for a configuration that cannot work; the message says what to change. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Fills in defaults and checks every field.
 * @throws ConfigError naming the option to change
 */
export function resolveConfig(partial: Partial<ServerConfig> = {}): ServerConfig {
  const dataDir = resolve(partial.dataDir ?? "./data");
  const config: ServerConfig = {
    serverName: partial.serverName ?? "localhost",
    port: partial.port ?? 8080,
    host: partial.host ?? "0.0.0.0",
    dataDir,
    databaseUrl: partial.databaseUrl ?? `file:${resolve(dataDir, "zimchat.db")}`,
    registration: partial.registration ?? "invite",
    envelopeTtlMs: partial.envelopeTtlMs ?? 30 * 24 * 3600 * 1000,
    mailboxMaxEnvelopes: partial.mailboxMaxEnvelopes ?? 50_000,
    mailboxMaxBytes: partial.mailboxMaxBytes ?? 256 * 1024 * 1024,
    expirySweepMs: partial.expirySweepMs ?? 60_000,
    sqliteSynchronous: partial.sqliteSynchronous ?? "FULL",
    rateLimits: partial.rateLimits === undefined ? defaultRateLimits : partial.rateLimits,
    logLevel: partial.logLevel ?? "info",
    attachmentMaxBytes: partial.attachmentMaxBytes ?? 100 * 1024 * 1024,
    attachmentQuotaBytes: partial.attachmentQuotaBytes ?? 1024 * 1024 * 1024,
    attachmentTtlMs: partial.attachmentTtlMs ?? 30 * 24 * 3600 * 1000,
    attachmentMaxConcurrentUploads: partial.attachmentMaxConcurrentUploads ?? 4,
    attachmentMaxCount: partial.attachmentMaxCount ?? 5000,
    attachmentUploadIdleMs: partial.attachmentUploadIdleMs ?? 30_000,
    attachmentMinUploadBytesPerSecond: partial.attachmentMinUploadBytesPerSecond ?? 2048,
    shutdownGraceMs: partial.shutdownGraceMs ?? 10_000,
    senderCertificateTtlMs: partial.senderCertificateTtlMs ?? 24 * 3600 * 1000,
    maxDevicesPerAccount: partial.maxDevicesPerAccount ?? 6,
    linkCodeTtlMs: partial.linkCodeTtlMs ?? limits.linkCodeTtlSeconds * 1000,
    plugins: checkPluginSpecs(partial.plugins ?? []),
    pluginHookTimeoutMs: partial.pluginHookTimeoutMs ?? 1000,
    pluginStartTimeoutMs: partial.pluginStartTimeoutMs ?? 30_000,
    eventLoopStallMs: partial.eventLoopStallMs ?? 1000,
    sqliteCheckpointMs: partial.sqliteCheckpointMs ?? 2000,
    sqliteWorker: partial.sqliteWorker ?? true,
    federation: partial.federation ?? "off",
    federationAllow: partial.federationAllow ?? [],
    federationPins: partial.federationPins ?? {},
    federationDeny: partial.federationDeny ?? [],
    federationInsecurePeers: partial.federationInsecurePeers ?? false,
    federationOutboxMaxPerPeer: partial.federationOutboxMaxPerPeer ?? 100_000,
    redisUrl: partial.redisUrl || undefined,
    redisPrefix: partial.redisPrefix ?? "zimchat",
    attachmentsDir: resolve(partial.attachmentsDir ?? resolve(dataDir, "attachments")),
    adminToken: partial.adminToken,
    trustProxy: partial.trustProxy ?? false,
    metrics: partial.metrics ?? true,
    metricsToken: partial.metricsToken,
    connectionLimits: { ...defaultConnectionLimits, ...partial.connectionLimits },
  };
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d+)?$/.test(config.serverName)) {
    throw new ConfigError(
      `serverName "${config.serverName}" is not a DNS name (set ZIMCHAT_SERVER_NAME / --server-name)`,
    );
  }
  for (const [server, pin] of Object.entries(config.federationPins)) {
    if (!federationPinPattern.test(pin)) {
      throw new ConfigError(
        `the federation pin of ${server} is not a fingerprint: expected sha256: and 64 lowercase hex digits, as \`zimchat federation-identity\` prints on that server (set ZIMCHAT_FEDERATION_ALLOW / --federation-allow)`,
      );
    }
  }
  if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) {
    throw new ConfigError(`port ${config.port} is not 0..65535 (set PORT / --port)`);
  }
  if (!["open", "invite", "closed"].includes(config.registration)) {
    throw new ConfigError(
      `registration mode "${config.registration}" is not open, invite or closed (set ZIMCHAT_REGISTRATION / --registration)`,
    );
  }
  if (!["FULL", "NORMAL"].includes(config.sqliteSynchronous)) {
    throw new ConfigError(
      `sqliteSynchronous "${config.sqliteSynchronous}" is not FULL or NORMAL (set ZIMCHAT_SQLITE_SYNCHRONOUS)`,
    );
  }
  if (
    !Number.isInteger(config.maxDevicesPerAccount) ||
    config.maxDevicesPerAccount < 1 ||
    config.maxDevicesPerAccount > limits.maxDeviceId
  ) {
    throw new ConfigError(
      `maxDevicesPerAccount ${config.maxDevicesPerAccount} is not 1..${limits.maxDeviceId} (set ZIMCHAT_MAX_DEVICES / --max-devices)`,
    );
  }
  if (
    !Number.isInteger(config.linkCodeTtlMs) ||
    config.linkCodeTtlMs < 1 ||
    config.linkCodeTtlMs > limits.linkCodeTtlSeconds * 1000
  ) {
    throw new ConfigError(`linkCodeTtlMs ${config.linkCodeTtlMs} is not 1..${limits.linkCodeTtlSeconds * 1000}`);
  }
  if (
    !Number.isInteger(config.senderCertificateTtlMs) ||
    config.senderCertificateTtlMs < 60_000 ||
    config.senderCertificateTtlMs > 30 * 86_400_000
  ) {
    throw new ConfigError(
      `senderCertificateTtlMs ${config.senderCertificateTtlMs} is not 1 minute..30 days in ms (set ZIMCHAT_SENDER_CERTIFICATE_TTL / --sender-certificate-ttl)`,
    );
  }
  for (const option of ["attachmentMaxBytes", "attachmentQuotaBytes", "attachmentTtlMs"] as const) {
    if (!Number.isSafeInteger(config[option]) || config[option] < 1) {
      throw new ConfigError(
        `${option} ${config[option]} must be a positive integer (set --attachment-max-mib, --attachment-quota-mib, --attachment-ttl-days)`,
      );
    }
  }
  for (const option of ["pluginHookTimeoutMs", "pluginStartTimeoutMs"] as const) {
    if (!Number.isSafeInteger(config[option]) || config[option] < 1)
      throw new ConfigError(`${option} ${config[option]} must be a positive integer (milliseconds)`);
  }
  for (const option of ["eventLoopStallMs", "sqliteCheckpointMs"] as const) {
    if (!Number.isSafeInteger(config[option]) || config[option] < 0)
      throw new ConfigError(`${option} ${config[option]} must be a whole number of milliseconds (0: off)`);
  }
  for (const [option, env] of [
    ["adminToken", "ZIMCHAT_ADMIN_TOKEN"],
    ["metricsToken", "ZIMCHAT_METRICS_TOKEN"],
  ] as const) {
    const token = config[option];
    if (
      token !== undefined &&
      (typeof token !== "string" || token.length < 16 || token.length > 512 || /\s/.test(token))
    ) {
      // The token itself is never echoed: it is a secret.
      throw new ConfigError(
        `${option} must be 16..512 characters without spaces, e.g. \`openssl rand -base64 32\` (set ${env})`,
      );
    }
  }
  for (const [option, value] of Object.entries(config.connectionLimits)) {
    if (!Number.isSafeInteger(value) || value < 1)
      throw new ConfigError(
        `connectionLimits.${option} ${value} must be a positive integer (see \`zimchat config reference\`)`,
      );
  }
  if (!(config.envelopeTtlMs > 0))
    throw new ConfigError("envelopeTtlMs must be positive (set ZIMCHAT_ENVELOPE_TTL_DAYS)");
  if (!/^(file:|postgres(ql)?:\/\/)/.test(config.databaseUrl)) {
    throw new ConfigError(`DATABASE_URL must start with file: (SQLite) or postgresql:// (PostgreSQL)`);
  }
  if (config.redisUrl !== undefined) {
    if (!/^rediss?:\/\/[^\s]+$/.test(config.redisUrl))
      throw new ConfigError("REDIS_URL must start with redis:// or rediss:// (set REDIS_URL / --redis-url)");
    if (config.databaseUrl.startsWith("file:")) {
      throw new ConfigError(
        "REDIS_URL is set but DATABASE_URL is SQLite: several nodes cannot share a SQLite file; use PostgreSQL (set DATABASE_URL=postgresql://...) or unset REDIS_URL for a single node",
      );
    }
  }
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(config.redisPrefix)) {
    throw new ConfigError(
      `redisPrefix "${config.redisPrefix}" must be 1..64 letters, digits, _ . : - (set ZIMCHAT_REDIS_PREFIX / --redis-prefix)`,
    );
  }
  return config;
}

/** Whether a plugin's `use` names a file (`./x.js`, `../x.js`, `/x.js`) rather than an npm package. */
export function isPath(use: string): boolean {
  return use.startsWith("./") || use.startsWith("../") || use.startsWith("/") || use === "." || use === "..";
}

/** Checks the shape of the `plugins` list and makes relative paths absolute (against the working directory). */
function checkPluginSpecs(plugins: unknown): PluginSpec[] {
  if (!Array.isArray(plugins)) throw new ConfigError("plugins must be an array of { use, config }");
  return plugins.map((spec: unknown, i): PluginSpec => {
    const use = (spec as { use?: unknown } | null)?.use;
    if (
      typeof spec !== "object" ||
      spec === null ||
      !((typeof use === "string" && use.length > 0) || (typeof use === "object" && use !== null))
    ) {
      throw new ConfigError(
        `plugins[${i}].use must be an npm package name, a path to an ES module, or a plugin object`,
      );
    }
    const unknown = Object.keys(spec).filter((key) => key !== "use" && key !== "config");
    if (unknown.length)
      throw new ConfigError(
        `plugins[${i}] has unknown key ${unknown.map((k) => JSON.stringify(k)).join(", ")} (a plugin entry is { use, config })`,
      );
    const { config } = spec as { config?: unknown };
    return { use: typeof use === "string" && isPath(use) ? resolve(use) : (use as PluginSpec["use"]), config };
  });
}
