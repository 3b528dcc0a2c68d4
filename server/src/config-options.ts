import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { serverNameSchema } from "@zimchat/protocol";
import { z } from "zod";
import {
  ConfigError,
  federationPinPattern,
  isPath,
  resolveConfig,
  type PluginSpec,
  type ServerConfig,
} from "./config.js";
import { defaultConnectionLimits, type ConnectionLimits } from "./gateway/connection-limits.js";

/** Where an option's value came from, for error messages and `config check`. */
export type OptionSource = `flag ${string}` | `env ${string}` | `file ${string}` | "default";

/**
 * One option of the homeserver. The config-file key, the CLI flag and the
 * environment variable all carry the same value in the same unit; the one
 * parser checks it wherever it came from.
 */
export interface OptionSpec {
  /** The config-file key (also the name in error messages). */
  key: string;
  /** The `serve` flag with its argument, e.g. `--port <port>`; absent: file only. */
  flag?: string;
  /** The environment variable; absent: no variable. */
  env?: string;
  /** The default as shown in help and the reference. */
  defaultText: string;
  /** One line: what the option does. */
  meaning: string;
  /** Parses the text of a flag or variable (or a file's JSON value, coerced to text) into what `apply` takes. */
  schema: z.ZodType;
  /** Sets the parsed value on the partial config. */
  apply: (config: Partial<ServerConfig>, value: never) => void;
  /** Never printed: `config check` shows `<redacted>` (URLs keep everything but the password). */
  secret?: "token" | "url";
  /** A path: a relative one in the config file resolves against the file's directory. */
  path?: boolean;
  /** Also a flag of the commands that open the database (`migrate`, `invite`, `keys`, …). */
  storage?: boolean;
}

const wholeNumber = z.string().regex(/^\d+$/, "expected a whole number").transform(Number);
const positive = wholeNumber.refine((n) => n >= 1, "expected at least 1");
const text = z.string().min(1, "expected a non-empty string");
const onOff = z.enum(["on", "off", "true", "false"], "expected on or off").transform((v) => v === "on" || v === "true");
const duration = z
  .string()
  .regex(/^\d+(m|h|d)$/, "expected a duration like 30m, 12h or 7d")
  .transform(
    (v) => Number(v.slice(0, -1)) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[v.slice(-1) as "m" | "h" | "d"],
  );
const trustProxy = z
  .string()
  .regex(
    /^(off|\d+|[0-9A-Za-z.:/,]+)$/,
    "expected off, a number of hops, or comma-separated addresses/subnets (loopback, 10.0.0.0/8, …)",
  )
  .transform((v): false | number | string[] =>
    v === "off" ? false : /^\d+$/.test(v) ? Number(v) : v.split(",").filter(Boolean),
  );
/** Comma-separated entries, trimmed, empty ones dropped. */
const commaSeparated = z.string().transform((v) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
);
const serverList = commaSeparated.pipe(z.array(serverNameSchema));
/**
 * `--federation-allow`: comma-separated `name` or `name=sha256:<64 hex>`
 * (a peer pinned by the fingerprint of its identity key).
 */
const allowList = commaSeparated
  .pipe(
    z.array(
      z.string().transform((entry, ctx) => {
        const [name = "", pin, ...rest] = entry.split("=");
        const server = serverNameSchema.safeParse(name);
        if (!server.success) {
          ctx.addIssue({
            code: "custom",
            message: `"${name}" is not a server name (${server.error.issues[0]?.message})`,
          });
          return z.NEVER;
        }
        if (pin === undefined) return { server: server.data, pin: undefined };
        if (rest.length || !federationPinPattern.test(pin)) {
          ctx.addIssue({
            code: "custom",
            message: `the pin of ${name} is not a fingerprint: expected ${name}=sha256: and 64 lowercase hex digits, as \`zimchat federation-identity\` prints on that server`,
          });
          return z.NEVER;
        }
        return { server: server.data, pin };
      }),
    ),
  )
  .superRefine((entries, ctx) => {
    const seen = new Map<string, string | undefined>();
    for (const { server, pin } of entries) {
      if (seen.has(server) && seen.get(server) !== pin) {
        ctx.addIssue({ code: "custom", message: `${server} is listed twice with different pins: keep one entry` });
        return;
      }
      seen.set(server, pin);
    }
  });
const mib = 1024 * 1024;
/** Sets one connection limit, keeping the others. */
const connectionLimit =
  (key: keyof ConnectionLimits, scale = 1) =>
  (c: Partial<ServerConfig>, v: number): void => {
    c.connectionLimits = { ...defaultConnectionLimits, ...c.connectionLimits, [key]: v * scale };
  };
const day = 86_400_000;

function option<S extends z.ZodType>(
  spec: Omit<OptionSpec, "schema" | "apply"> & {
    schema: S;
    apply: (config: Partial<ServerConfig>, value: z.output<S>) => void;
  },
): OptionSpec {
  return spec as OptionSpec;
}

/** Every option of `zimchat serve`, in the order of the reference table. */
export const optionSpecs: readonly OptionSpec[] = [
  option({
    key: "serverName",
    flag: "--server-name <name>",
    env: "ZIMCHAT_SERVER_NAME",
    defaultText: "localhost",
    meaning: "this server's DNS name, as in `@user:server`",
    schema: text,
    apply: (c, v) => (c.serverName = v),
  }),
  option({
    key: "federation",
    flag: "--federation <off|allowlist|open>",
    env: "ZIMCHAT_FEDERATION",
    defaultText: "off",
    meaning:
      "federation with other homeservers: `off` (no federation document, nothing federated), `allowlist` or `open`; see docs/federation.md",
    schema: z.enum(["off", "allowlist", "open"], "expected off, allowlist or open"),
    apply: (c, v) => (c.federation = v),
  }),
  option({
    key: "federationAllow",
    flag: "--federation-allow <servers>",
    env: "ZIMCHAT_FEDERATION_ALLOW",
    defaultText: "(none)",
    meaning:
      "the servers accepted with `--federation allowlist`, comma-separated: `name` (trusts DNS and TLS for that name) or `name=sha256:<hex>` (pinned: that server's identity key must have this fingerprint, from `zimchat federation-identity` there; pins apply in `open` mode too), e.g. `club.example=sha256:3f2a…,news.example:8443`",
    schema: allowList,
    apply: (c, v) => {
      c.federationAllow = v.map((e) => e.server);
      c.federationPins = Object.fromEntries(v.flatMap((e) => (e.pin ? [[e.server, e.pin]] : [])));
    },
  }),
  option({
    key: "federationDeny",
    flag: "--federation-deny <servers>",
    env: "ZIMCHAT_FEDERATION_DENY",
    defaultText: "(none)",
    meaning: "servers refused in every federation mode, comma-separated names",
    schema: serverList,
    apply: (c, v) => (c.federationDeny = v),
  }),
  option({
    key: "federationInsecurePeers",
    flag: "--federation-insecure-peers <on|off>",
    env: "ZIMCHAT_FEDERATION_INSECURE_PEERS",
    defaultText: "off",
    meaning:
      "reach peers over plain HTTP and allow loopback and private addresses (tests and closed networks only; off: HTTPS, and names that resolve to non-public addresses are refused)",
    schema: onOff,
    apply: (c, v) => (c.federationInsecurePeers = v),
  }),
  option({
    key: "federationOutboxMaxPerPeer",
    flag: "--federation-outbox-max-per-peer <n>",
    env: "ZIMCHAT_FEDERATION_OUTBOX_MAX_PER_PEER",
    defaultText: "100000",
    meaning:
      "sends that may wait in the outbox for one other server (it is down) before further sends to it are refused (507 outbox_full)",
    schema: positive,
    apply: (c, v) => (c.federationOutboxMaxPerPeer = v),
  }),
  option({
    key: "port",
    flag: "--port <port>",
    env: "PORT",
    defaultText: "8080",
    meaning: "HTTP and Socket.IO port (`0`: any free port)",
    schema: wholeNumber,
    apply: (c, v) => (c.port = v),
  }),
  option({
    key: "host",
    flag: "--host <host>",
    env: "HOST",
    defaultText: "0.0.0.0",
    meaning: "address to listen on",
    schema: text,
    apply: (c, v) => (c.host = v),
  }),
  option({
    key: "dataDir",
    flag: "--data-dir <dir>",
    env: "ZIMCHAT_DATA_DIR",
    defaultText: "./data",
    meaning: "SQLite database, `keys/` (sealed-sender trust root) and `attachments/`",
    schema: text,
    apply: (c, v) => (c.dataDir = v),
    path: true,
    storage: true,
  }),
  option({
    key: "databaseUrl",
    flag: "--database-url <url>",
    env: "DATABASE_URL",
    defaultText: "file:<dataDir>/zimchat.db",
    meaning: "`file:/path.db` (SQLite) or `postgresql://user@host/db[?schema=name]`",
    schema: text,
    apply: (c, v) => (c.databaseUrl = v),
    secret: "url",
    storage: true,
  }),
  option({
    key: "registration",
    flag: "--registration <mode>",
    env: "ZIMCHAT_REGISTRATION",
    defaultText: "invite",
    meaning: "who may register: `open`, `invite` or `closed`",
    schema: z.enum(["open", "invite", "closed"], "expected open, invite or closed"),
    apply: (c, v) => (c.registration = v),
  }),
  option({
    key: "envelopeTtlDays",
    flag: "--envelope-ttl-days <days>",
    env: "ZIMCHAT_ENVELOPE_TTL_DAYS",
    defaultText: "30",
    meaning: "queued envelopes older than this are deleted unread",
    schema: positive,
    apply: (c, v) => (c.envelopeTtlMs = v * day),
  }),
  option({
    key: "maxDevices",
    flag: "--max-devices <n>",
    env: "ZIMCHAT_MAX_DEVICES",
    defaultText: "6",
    meaning: "devices per account, the primary included (1..127)",
    schema: wholeNumber,
    apply: (c, v) => (c.maxDevicesPerAccount = v),
  }),
  option({
    key: "senderCertificateTtl",
    flag: "--sender-certificate-ttl <duration>",
    env: "ZIMCHAT_SENDER_CERTIFICATE_TTL",
    defaultText: "24h",
    meaning: "lifetime of sealed-sender certificates (`12h`, `1d`, …; 1 minute to 30 days)",
    schema: duration,
    apply: (c, v) => (c.senderCertificateTtlMs = v),
  }),
  option({
    key: "mailboxMaxEnvelopes",
    flag: "--mailbox-max-envelopes <n>",
    env: "ZIMCHAT_MAILBOX_MAX_ENVELOPES",
    defaultText: "50000",
    meaning: "envelopes queued for one recipient device before sends to it are refused (507 mailbox_full)",
    schema: positive,
    apply: (c, v) => (c.mailboxMaxEnvelopes = v),
  }),
  option({
    key: "mailboxMaxMib",
    flag: "--mailbox-max-mib <mib>",
    env: "ZIMCHAT_MAILBOX_MAX_MIB",
    defaultText: "256",
    meaning: "bytes queued for one recipient device before sends to it are refused, in MiB",
    schema: positive,
    apply: (c, v) => (c.mailboxMaxBytes = v * mib),
  }),
  option({
    key: "attachmentMaxMib",
    flag: "--attachment-max-mib <mib>",
    env: "ZIMCHAT_ATTACHMENT_MAX_MIB",
    defaultText: "100",
    meaning: "largest encrypted attachment upload, in MiB",
    schema: positive,
    apply: (c, v) => (c.attachmentMaxBytes = v * mib),
  }),
  option({
    key: "attachmentQuotaMib",
    flag: "--attachment-quota-mib <mib>",
    env: "ZIMCHAT_ATTACHMENT_QUOTA_MIB",
    defaultText: "1024",
    meaning: "attachment storage per account, in MiB",
    schema: positive,
    apply: (c, v) => (c.attachmentQuotaBytes = v * mib),
  }),
  option({
    key: "attachmentTtlDays",
    flag: "--attachment-ttl-days <days>",
    env: "ZIMCHAT_ATTACHMENT_TTL_DAYS",
    defaultText: "30",
    meaning: "attachments are deleted this long after upload",
    schema: positive,
    apply: (c, v) => (c.attachmentTtlMs = v * day),
  }),
  option({
    key: "attachmentMaxConcurrentUploads",
    flag: "--attachment-max-concurrent-uploads <n>",
    env: "ZIMCHAT_ATTACHMENT_MAX_CONCURRENT_UPLOADS",
    defaultText: "4",
    meaning: "uploads one account may have in flight at once (across nodes)",
    schema: positive,
    apply: (c, v) => (c.attachmentMaxConcurrentUploads = v),
  }),
  option({
    key: "attachmentMaxCount",
    flag: "--attachment-max-count <n>",
    env: "ZIMCHAT_ATTACHMENT_MAX_COUNT",
    defaultText: "5000",
    meaning: "unexpired attachments per account, zero-byte ones included",
    schema: positive,
    apply: (c, v) => (c.attachmentMaxCount = v),
  }),
  option({
    key: "attachmentUploadIdleSeconds",
    flag: "--attachment-upload-idle-seconds <s>",
    env: "ZIMCHAT_ATTACHMENT_UPLOAD_IDLE_SECONDS",
    defaultText: "30",
    meaning: "an upload that sends nothing for this long is cut off and its partial file removed",
    schema: positive,
    apply: (c, v) => (c.attachmentUploadIdleMs = v * 1000),
  }),
  option({
    key: "attachmentMinUploadRate",
    flag: "--attachment-min-upload-rate <bytes/s>",
    env: "ZIMCHAT_ATTACHMENT_MIN_UPLOAD_RATE",
    defaultText: "2048",
    meaning: "average bytes per second an upload must keep after its first idle window (0: no minimum)",
    schema: wholeNumber,
    apply: (c, v) => (c.attachmentMinUploadBytesPerSecond = v),
  }),
  option({
    key: "attachmentsDir",
    flag: "--attachments-dir <dir>",
    env: "ZIMCHAT_ATTACHMENTS_DIR",
    defaultText: "<dataDir>/attachments",
    meaning: "where encrypted attachment blobs live (a directory shared by every node)",
    schema: text,
    apply: (c, v) => (c.attachmentsDir = v),
    path: true,
  }),
  option({
    key: "sqliteSynchronous",
    flag: "--sqlite-synchronous <level>",
    env: "ZIMCHAT_SQLITE_SYNCHRONOUS",
    defaultText: "FULL",
    meaning: "SQLite `synchronous` level, `FULL` or `NORMAL`",
    schema: z.enum(["FULL", "NORMAL"], "expected FULL or NORMAL"),
    apply: (c, v) => (c.sqliteSynchronous = v),
  }),
  option({
    key: "sqliteCheckpointMs",
    flag: "--sqlite-checkpoint-ms <ms>",
    env: "ZIMCHAT_SQLITE_CHECKPOINT_MS",
    defaultText: "2000",
    meaning:
      "SQLite: checkpoint and truncate the WAL this often, so deleted envelopes leave the files within seconds (`0`: SQLite's auto-checkpoint only)",
    schema: wholeNumber,
    apply: (c, v) => (c.sqliteCheckpointMs = v),
  }),
  option({
    key: "sqliteWorker",
    flag: "--sqlite-worker <on|off>",
    env: "ZIMCHAT_SQLITE_WORKER",
    defaultText: "on",
    meaning:
      "SQLite: run statements in a storage worker thread, so commits and their fsyncs never stall the sockets (`off`: on the event loop, to measure the difference)",
    schema: onOff,
    apply: (c, v) => (c.sqliteWorker = v),
  }),
  option({
    key: "logLevel",
    flag: "--log-level <level>",
    env: "ZIMCHAT_LOG_LEVEL",
    defaultText: "info",
    meaning: "pino level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`",
    schema: z.enum(
      ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
      "expected fatal, error, warn, info, debug, trace or silent",
    ),
    apply: (c, v) => (c.logLevel = v),
  }),
  option({
    key: "rateLimits",
    flag: "--rate-limits <onoff>",
    env: "ZIMCHAT_RATE_LIMITS",
    defaultText: "on",
    meaning: "`off` only for benchmarks",
    schema: onOff,
    apply: (c, v) => {
      if (!v) c.rateLimits = false;
    },
  }),
  option({
    key: "redisUrl",
    flag: "--redis-url <url>",
    env: "REDIS_URL",
    defaultText: "(unset)",
    meaning:
      "`redis://…`: several nodes share Socket.IO rooms, rate limits and job locks through Redis; unset: one node, all in memory",
    schema: text,
    apply: (c, v) => (c.redisUrl = v),
    secret: "url",
  }),
  option({
    key: "redisPrefix",
    flag: "--redis-prefix <prefix>",
    env: "ZIMCHAT_REDIS_PREFIX",
    defaultText: "zimchat",
    meaning: "prefix of every Redis key and channel, so several homeservers can share one Redis",
    schema: text,
    apply: (c, v) => (c.redisPrefix = v),
  }),
  option({
    key: "adminToken",
    flag: "--admin-token <token>",
    env: "ZIMCHAT_ADMIN_TOKEN",
    defaultText: "(unset)",
    meaning: "bearer token of the admin HTTP API (at least 16 characters); unset: admin API off",
    schema: text,
    apply: (c, v) => (c.adminToken = v),
    secret: "token",
  }),
  option({
    key: "trustProxy",
    flag: "--trust-proxy <proxies>",
    env: "ZIMCHAT_TRUST_PROXY",
    defaultText: "off",
    meaning:
      "reverse proxies whose `X-Forwarded-For` names the client (for per-address rate limits): `off`, a number of hops, or addresses/subnets such as `loopback,10.0.0.0/8`",
    schema: trustProxy,
    apply: (c, v) => (c.trustProxy = v),
  }),
  option({
    key: "metrics",
    flag: "--metrics <onoff>",
    env: "ZIMCHAT_METRICS",
    defaultText: "on",
    meaning: "serve Prometheus metrics at `GET /metrics`",
    schema: onOff,
    apply: (c, v) => (c.metrics = v),
  }),
  option({
    key: "metricsToken",
    flag: "--metrics-token <token>",
    env: "ZIMCHAT_METRICS_TOKEN",
    defaultText: "(unset)",
    meaning: "when set, `/metrics` needs `Authorization: Bearer <token>` (at least 16 characters)",
    schema: text,
    apply: (c, v) => (c.metricsToken = v),
    secret: "token",
  }),
  option({
    key: "pluginHookTimeoutMs",
    flag: "--plugin-hook-timeout-ms <ms>",
    env: "ZIMCHAT_PLUGIN_HOOK_TIMEOUT_MS",
    defaultText: "1000",
    meaning: "budget of one plugin for one hook call (all recipients of a send together) or route request",
    schema: positive,
    apply: (c, v) => (c.pluginHookTimeoutMs = v),
  }),
  option({
    key: "pluginStartTimeoutMs",
    flag: "--plugin-start-timeout-ms <ms>",
    env: "ZIMCHAT_PLUGIN_START_TIMEOUT_MS",
    defaultText: "30000",
    meaning: "budget of one plugin's `setup`, `start` and `stop`",
    schema: positive,
    apply: (c, v) => (c.pluginStartTimeoutMs = v),
  }),
  option({
    key: "eventLoopStallMs",
    flag: "--event-loop-stall-ms <ms>",
    env: "ZIMCHAT_EVENT_LOOP_STALL_MS",
    defaultText: "1000",
    meaning: "an event-loop stall this long is logged with the plugin and hook that ran, and counted (`0`: off)",
    schema: wholeNumber,
    apply: (c, v) => (c.eventLoopStallMs = v),
  }),
  option({
    key: "handshakesPerAddress",
    flag: "--handshakes-per-address <n>",
    env: "ZIMCHAT_HANDSHAKES_PER_ADDRESS",
    defaultText: String(defaultConnectionLimits.handshakesPerAddress),
    meaning:
      "Socket.IO connections from one address not yet authenticated nor on `/sealed` (more are refused with HTTP 403)",
    schema: positive,
    apply: connectionLimit("handshakesPerAddress"),
  }),
  option({
    key: "handshakesTotal",
    flag: "--handshakes-total <n>",
    env: "ZIMCHAT_HANDSHAKES_TOTAL",
    defaultText: String(defaultConnectionLimits.handshakesTotal),
    meaning: "such connections on this node, all addresses together",
    schema: positive,
    apply: connectionLimit("handshakesTotal"),
  }),
  option({
    key: "handshakeTimeoutSeconds",
    flag: "--handshake-timeout-seconds <s>",
    env: "ZIMCHAT_HANDSHAKE_TIMEOUT_SECONDS",
    defaultText: String(defaultConnectionLimits.handshakeTimeoutMs / 1000),
    meaning: "a connection that joins no namespace in this time is closed",
    schema: positive,
    apply: connectionLimit("handshakeTimeoutMs", 1000),
  }),
  option({
    key: "sealedSocketsPerAddress",
    flag: "--sealed-sockets-per-address <n>",
    env: "ZIMCHAT_SEALED_SOCKETS_PER_ADDRESS",
    defaultText: String(defaultConnectionLimits.sealedPerAddress),
    meaning: "credential-free `/sealed` sockets from one address (more are refused, `too_many_connections`)",
    schema: positive,
    apply: connectionLimit("sealedPerAddress"),
  }),
  option({
    key: "sealedSocketsTotal",
    flag: "--sealed-sockets-total <n>",
    env: "ZIMCHAT_SEALED_SOCKETS_TOTAL",
    defaultText: String(defaultConnectionLimits.sealedTotal),
    meaning: "credential-free `/sealed` sockets on this node, all addresses together",
    schema: positive,
    apply: connectionLimit("sealedTotal"),
  }),
  option({
    key: "sealedIdleSeconds",
    flag: "--sealed-idle-seconds <s>",
    env: "ZIMCHAT_SEALED_IDLE_SECONDS",
    defaultText: String(defaultConnectionLimits.sealedIdleMs / 1000),
    meaning: "a `/sealed` socket that sends no event for this long is closed",
    schema: positive,
    apply: connectionLimit("sealedIdleMs", 1000),
  }),
  option({
    key: "plugins",
    defaultText: "[]",
    meaning: 'server plugins, file only: `[{ "use": "<package or ./path.js>", "config": {…} }]`',
    schema: z.unknown(),
    apply: (c, v) => (c.plugins = v as PluginSpec[]),
  }),
];

/** The `--config` option itself: a JSON file that may set every key of {@link optionSpecs}. */
export const configFileOption = { flag: "--config <file>", env: "ZIMCHAT_CONFIG" } as const;

/** Where the options come from: parsed flags (by key), the environment, and the config file's path. */
export interface OptionInputs {
  flags: Record<string, unknown>;
  env: Record<string, string | undefined>;
  file?: string | undefined;
}

/** A resolved configuration and where each option came from. */
export interface LoadedConfig {
  config: ServerConfig;
  sources: Record<string, OptionSource>;
}

/**
 * Resolves the configuration with precedence flag > env > file > default,
 * checks every value with its option's parser, then {@link resolveConfig}.
 * @throws ConfigError `invalid configuration: <key> (<source>): <what is wrong>`
 */
export function loadConfig({ flags, env, file }: OptionInputs): LoadedConfig {
  const fileValues = file === undefined ? {} : readConfigFile(file);
  const partial: Partial<ServerConfig> = {};
  const sources: Record<string, OptionSource> = {};
  for (const spec of optionSpecs) {
    const found = pick(spec, flags, env, fileValues, file);
    sources[spec.key] = found?.source ?? "default";
    if (!found) continue;
    let value: unknown;
    if (spec.key === "plugins") value = filePlugins(found.raw, file ?? "");
    else {
      const raw = typeof found.raw === "number" || typeof found.raw === "boolean" ? String(found.raw) : found.raw;
      const parsed = spec.schema.safeParse(raw);
      if (!parsed.success) throw invalid(spec.key, found.source, parsed.error.issues[0]?.message ?? "invalid value");
      value =
        spec.path && found.source.startsWith("file") && typeof parsed.data === "string"
          ? resolve(dirname(resolve(file!)), parsed.data)
          : parsed.data;
    }
    spec.apply(partial, value as never);
  }
  try {
    return { config: resolveConfig(partial), sources };
  } catch (error) {
    if (error instanceof ConfigError)
      throw new ConfigError(`invalid configuration: ${error.message}`, { cause: error });
    throw error;
  }
}

function pick(
  spec: OptionSpec,
  flags: Record<string, unknown>,
  env: Record<string, string | undefined>,
  fileValues: Record<string, unknown>,
  file: string | undefined,
): { raw: unknown; source: OptionSource } | null {
  if (spec.flag && flags[spec.key] !== undefined)
    return { raw: flags[spec.key], source: `flag ${spec.flag.split(" ")[0]!}` };
  // A secret may come from a file (`ZIMCHAT_ADMIN_TOKEN_FILE=/run/secrets/admin`), as container secrets are mounted.
  const secretFile = spec.secret && spec.env ? env[`${spec.env}_FILE`] : undefined;
  if (secretFile) {
    try {
      return { raw: readFileSync(secretFile, "utf8").trim(), source: `env ${spec.env!}_FILE` };
    } catch (error) {
      throw invalid(
        spec.key,
        `env ${spec.env!}_FILE`,
        `cannot read ${secretFile}: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
  }
  // An empty variable counts as unset (as `VAR= zimchat serve` means).
  if (spec.env && env[spec.env] !== undefined && env[spec.env] !== "")
    return { raw: env[spec.env], source: `env ${spec.env}` };
  if (fileValues[spec.key] !== undefined) return { raw: fileValues[spec.key], source: `file ${file!}` };
  return null;
}

function invalid(key: string, source: OptionSource, message: string): ConfigError {
  return new ConfigError(`invalid configuration: ${key} (${source}): ${message}`);
}

/**
 * Reads a JSON config file whose keys are {@link optionSpecs}' keys.
 * @throws ConfigError naming the file, and unknown keys by name
 */
function readConfigFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(`invalid configuration: config file ${file}: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new ConfigError(`invalid configuration: config file ${file}: must hold a JSON object`);
  const known = new Set(optionSpecs.map((s) => s.key));
  const unknown = Object.keys(parsed).filter((k) => !known.has(k));
  if (unknown.length)
    throw new ConfigError(
      `invalid configuration: config file ${file}: unknown key ${unknown.map((k) => JSON.stringify(k)).join(", ")} (see \`zimchat config reference\`)`,
    );
  return parsed as Record<string, unknown>;
}

/** The file's `plugins`, with paths (`./x.js`) resolved against the file's directory. */
function filePlugins(plugins: unknown, file: string): PluginSpec[] {
  const source: OptionSource = `file ${file}`;
  if (!Array.isArray(plugins)) throw invalid("plugins", source, 'expected an array of { "use": ..., "config": ... }');
  const base = dirname(resolve(file));
  return plugins.map((spec: unknown, i) => {
    const use = (spec as { use?: unknown } | null)?.use;
    if (typeof use !== "string")
      throw invalid(`plugins[${i}].use`, source, "expected an npm package name or a path to an ES module");
    return { ...(spec as PluginSpec), use: isPath(use) ? resolve(base, use) : use };
  });
}

/** The effective configuration as printable JSON: secrets become `<redacted>`, a URL keeps all but its password. */
export function redactedConfig(config: ServerConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ...config,
    plugins: config.plugins.map((p) => ({ use: typeof p.use === "string" ? p.use : p.use.name, config: p.config })),
  };
  for (const spec of optionSpecs) {
    // Every secret option's file key is also its ServerConfig field.
    const value = out[spec.key];
    if (!spec.secret || typeof value !== "string") continue;
    out[spec.key] = spec.secret === "token" ? "<redacted>" : redactUrl(value);
  }
  return out;
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "redacted";
    return parsed.toString();
  } catch {
    return "<redacted>";
  }
}

/** The Markdown reference of every option (the table in docs/configuration.md is this, verbatim). */
export function configReference(): string {
  const cell = (s: string | undefined): string => (s ? `\`${s}\`` : "");
  const rows = optionSpecs.map(
    (s) =>
      `| ${cell(s.key)} | ${cell(s.flag?.split(" ")[0])} | ${cell(s.env)} | ${cell(s.defaultText)} | ${s.meaning} |`,
  );
  return [
    "| file key | flag | environment | default | meaning |",
    "|---|---|---|---|---|",
    ...rows,
    "",
    `The config file (\`${configFileOption.flag.split(" ")[0]}\` or \`${configFileOption.env}\`) is one JSON object whose keys are the file keys above, in the same units as the flags (days, MiB, \`24h\`, \`on\`/\`off\`); numbers may be JSON numbers. Secrets (\`databaseUrl\`, \`redisUrl\`, \`adminToken\`, \`metricsToken\`) may also be read from a file named by the variable with \`_FILE\` appended (\`ZIMCHAT_ADMIN_TOKEN_FILE=/run/secrets/admin\`), which wins over the variable itself. Relative paths in the config file (\`dataDir\`, \`attachmentsDir\`, plugin paths) are relative to the file. Precedence: flag > environment > file > default. An unknown key or a bad value stops start-up with a message naming the option and where it came from.`,
  ].join("\n");
}
