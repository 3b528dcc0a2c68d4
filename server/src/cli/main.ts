import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { resolveConfig, ConfigError, isPath, type PluginSpec, type ServerConfig } from "../config.js";
import { parseDatabaseUrl } from "../db/database-url.js";
import type { Services } from "../services/index.js";
import { serverVersion } from "../version.js";
import { registerAdminCommands } from "./admin.js";
import { duration, int } from "./arguments.js";

// The server, Prisma and libsignal load only in the commands that use them,
// so `--help` and argument errors answer at once.

// The only module that reads the environment (through commander's .env()):
// everything below it is handed a ServerConfig.

type StorageOptions = {
  dataDir: string;
  databaseUrl?: string;
};

function withStorageOptions(command: Command): Command {
  return command
    .addOption(new Option("--data-dir <dir>", "where the SQLite database, keys and files live").env("ZIMCHAT_DATA_DIR").default("./data"))
    .addOption(new Option("--database-url <url>", "file:/path.db (SQLite) or postgresql://... (default: SQLite in the data dir)").env("DATABASE_URL"));
}

/** What a config file (`--config`, `ZIMCHAT_CONFIG`) may set. */
const configFileKeys = ["plugins", "pluginHookTimeoutMs", "pluginStartTimeoutMs"] as const;

/**
 * Reads a JSON config file: `{ "plugins": [{ "use": ..., "config": ... }], "pluginHookTimeoutMs": 1000 }`.
 * Plugin paths (`./x.js`) resolve against the file's directory.
 * @throws ConfigError naming the file and what is wrong
 */
function readConfigFile(file: string): Partial<ServerConfig> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(`config file ${file}: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ConfigError(`config file ${file}: must hold a JSON object`);
  const unknown = Object.keys(parsed).filter((k) => !(configFileKeys as readonly string[]).includes(k));
  if (unknown.length) throw new ConfigError(`config file ${file}: unknown key ${unknown.map((k) => JSON.stringify(k)).join(", ")} (known: ${configFileKeys.join(", ")})`);
  const { plugins, ...rest } = parsed as Partial<Record<(typeof configFileKeys)[number], unknown>>;
  const partial = rest as Partial<ServerConfig>;
  if (plugins !== undefined) {
    if (!Array.isArray(plugins)) throw new ConfigError(`config file ${file}: "plugins" must be an array of { "use": ..., "config": ... }`);
    const base = dirname(resolve(file));
    partial.plugins = plugins.map((spec: unknown, i) => {
      const use = (spec as { use?: unknown } | null)?.use;
      if (typeof use !== "string") throw new ConfigError(`config file ${file}: plugins[${i}].use must be an npm package name or a path to an ES module`);
      return { ...(spec as PluginSpec), use: isPath(use) ? resolve(base, use) : use };
    });
  }
  return partial;
}

function configFrom(options: StorageOptions & Record<string, unknown>): ServerConfig {
  const partial: Partial<ServerConfig> = { ...(typeof options.config === "string" ? readConfigFile(options.config) : {}), dataDir: options.dataDir };
  if (options.databaseUrl) partial.databaseUrl = options.databaseUrl;
  if (options.port !== undefined) partial.port = options.port as number;
  if (options.host) partial.host = options.host as string;
  if (options.serverName) partial.serverName = options.serverName as string;
  if (options.registration) partial.registration = options.registration as ServerConfig["registration"];
  if (options.logLevel) partial.logLevel = options.logLevel as ServerConfig["logLevel"];
  if (options.sqliteSynchronous) partial.sqliteSynchronous = options.sqliteSynchronous as ServerConfig["sqliteSynchronous"];
  if (options.envelopeTtlDays !== undefined) partial.envelopeTtlMs = (options.envelopeTtlDays as number) * 86_400_000;
  if (options.senderCertificateTtl !== undefined) partial.senderCertificateTtlMs = options.senderCertificateTtl as number;
  if (options.rateLimits === "off") partial.rateLimits = false;
  if (options.attachmentMaxMib !== undefined) partial.attachmentMaxBytes = (options.attachmentMaxMib as number) * 1024 * 1024;
  if (options.attachmentQuotaMib !== undefined) partial.attachmentQuotaBytes = (options.attachmentQuotaMib as number) * 1024 * 1024;
  if (options.attachmentTtlDays !== undefined) partial.attachmentTtlMs = (options.attachmentTtlDays as number) * 86_400_000;
  if (options.maxDevices !== undefined) partial.maxDevicesPerAccount = options.maxDevices as number;
  if (options.adminToken) partial.adminToken = options.adminToken as string;
  if (options.redisUrl) partial.redisUrl = options.redisUrl as string;
  if (options.redisPrefix) partial.redisPrefix = options.redisPrefix as string;
  if (options.attachmentsDir) partial.attachmentsDir = options.attachmentsDir as string;
  return resolveConfig(partial);
}

const program = new Command()
  .name("zimchat")
  .description("ZimChat homeserver: end-to-end encrypted messaging your community runs itself")
  .version(serverVersion)
  .showHelpAfterError();

withStorageOptions(program.command("serve").description("run the homeserver (applies pending migrations first)"))
  .addOption(new Option("--config <file>", "JSON config file with server plugins: { \"plugins\": [{ \"use\": \"<package or ./path.js>\", \"config\": {...} }] }").env("ZIMCHAT_CONFIG"))
  .addOption(new Option("--port <port>", "HTTP and Socket.IO port (0: any free port)").env("PORT").default(8080).argParser(int))
  .addOption(new Option("--host <host>", "address to listen on").env("HOST").default("0.0.0.0"))
  .addOption(new Option("--server-name <name>", "this server's DNS name, as in @user:name").env("ZIMCHAT_SERVER_NAME").default("localhost"))
  .addOption(new Option("--registration <mode>", "who may register").choices(["open", "invite", "closed"]).env("ZIMCHAT_REGISTRATION").default("invite"))
  .addOption(new Option("--log-level <level>", "pino log level").choices(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).env("ZIMCHAT_LOG_LEVEL").default("info"))
  .addOption(new Option("--sqlite-synchronous <level>", "SQLite synchronous level").choices(["FULL", "NORMAL"]).env("ZIMCHAT_SQLITE_SYNCHRONOUS").default("FULL"))
  .addOption(new Option("--envelope-ttl-days <days>", "delete queued envelopes older than this").env("ZIMCHAT_ENVELOPE_TTL_DAYS").default(30).argParser(int))
  .addOption(new Option("--sender-certificate-ttl <duration>", "lifetime of sealed-sender certificates, e.g. 12h, 1d").env("ZIMCHAT_SENDER_CERTIFICATE_TTL").default(86_400_000, "24h").argParser(duration))
  .addOption(new Option("--attachment-max-mib <mib>", "largest encrypted attachment upload, in MiB").env("ZIMCHAT_ATTACHMENT_MAX_MIB").default(100).argParser(int))
  .addOption(new Option("--attachment-quota-mib <mib>", "attachment storage per account, in MiB").env("ZIMCHAT_ATTACHMENT_QUOTA_MIB").default(1024).argParser(int))
  .addOption(new Option("--attachment-ttl-days <days>", "delete attachments this long after upload").env("ZIMCHAT_ATTACHMENT_TTL_DAYS").default(30).argParser(int))
  .addOption(new Option("--rate-limits <onoff>", "turn rate limits off (benchmarks only)").choices(["on", "off"]).env("ZIMCHAT_RATE_LIMITS").default("on"))
  .addOption(new Option("--max-devices <n>", "devices per account, the primary included (1..127)").env("ZIMCHAT_MAX_DEVICES").default(6).argParser(int))
  .addOption(new Option("--admin-token <token>", "bearer token of the admin API under /admin/v1 (unset: admin API off)").env("ZIMCHAT_ADMIN_TOKEN"))
  .addOption(new Option("--redis-url <url>", "Redis shared by several nodes (needs PostgreSQL); unset: a single node, all in memory").env("REDIS_URL"))
  .addOption(new Option("--redis-prefix <prefix>", "prefix of every Redis key and channel").env("ZIMCHAT_REDIS_PREFIX").default("zimchat"))
  .addOption(new Option("--attachments-dir <dir>", "encrypted attachment blobs (several nodes share one directory)").env("ZIMCHAT_ATTACHMENTS_DIR").default(undefined, "<data-dir>/attachments"))
  .action(async (options: StorageOptions & Record<string, unknown>) => {
    const config = configFrom(options);
    const { createLogger } = await import("../logger.js");
    const { openHomeserver } = await import("../app.js");
    const logger = createLogger(config.logLevel);
    const server = await openHomeserver(config, logger);
    server.httpServer.listen(config.port, config.host, () => {
      const address = server.httpServer.address();
      const port = typeof address === "object" && address ? address.port : config.port;
      // Start-up is always announced (scripts wait for this line), whatever the level.
      const announce = config.logLevel === "silent" ? logger : logger.child({}, { level: "info" });
      announce.info({ port, serverName: config.serverName, registration: config.registration, database: parseDatabaseUrl(config.databaseUrl).provider }, "listening");
      announce.info({ fingerprint: server.services.certificates.trustRoot().fingerprint }, "sealed-sender trust root (publish this fingerprint)");
    });
    const shutdown = (signal: string): void => {
      logger.info({ signal }, "shutting down");
      server.close().then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  });

withStorageOptions(program.command("migrate").description("apply pending database migrations and exit")).action(async (options: StorageOptions) => {
  const config = configFrom(options);
  const { migrate } = await import("../db/migrate.js");
  const applied = await migrate(parseDatabaseUrl(config.databaseUrl));
  console.log(applied.length ? `applied: ${applied.join(", ")}` : "the database is up to date");
});

withStorageOptions(program.command("seizure-report").description("print what someone holding this server's disk learns, and check what they do not (read-only)"))
  .option("--json", "print JSON")
  .action(async (options: StorageOptions & { json?: boolean }) => {
    const { runSeizureReport } = await import("./seizure-report.js");
    await runSeizureReport(configFrom(options), options.json === true);
  });

const invite = program.command("invite").description("manage registration invites (for --registration invite)");

async function withServices<T>(options: StorageOptions, work: (services: Services) => Promise<T>): Promise<T> {
  const config = configFrom(options);
  const { openDatabase } = await import("../db/database.js");
  const { createServices } = await import("../services/index.js");
  const database = await openDatabase({ databaseUrl: config.databaseUrl, sqliteSynchronous: config.sqliteSynchronous });
  try {
    return await work(createServices(config, database));
  } finally {
    await database.close();
  }
}

withStorageOptions(invite.command("create").description("create an invite and print its token (shown once)"))
  .option("--uses <n>", "how many registrations it allows", int, 1)
  .option("--expires <duration>", "lifetime, e.g. 30m, 12h, 7d", duration, 7 * 86_400_000)
  .option("--json", "print JSON")
  .action(async (options: StorageOptions & { uses: number; expires: number; json?: boolean }) => {
    if (options.uses < 1) throw new InvalidArgumentError("--uses must be at least 1");
    const created = await withServices(options, (s) => s.invites.create({ maxUses: options.uses, expiresInMs: options.expires }));
    if (options.json) console.log(JSON.stringify({ ...created, expiresAt: created.expiresAt.toISOString() }));
    else console.log(`${created.token}\n(id ${created.id}, ${created.maxUses} use(s), expires ${created.expiresAt.toISOString()})`);
  });

withStorageOptions(invite.command("list").description("list invites (never their tokens)"))
  .option("--json", "print JSON")
  .action(async (options: StorageOptions & { json?: boolean }) => {
    const invites = await withServices(options, (s) => s.invites.list());
    if (options.json) {
      console.log(JSON.stringify(invites));
      return;
    }
    if (!invites.length) console.log("no invites");
    for (const i of invites) {
      const state = i.revokedAt ? "revoked" : i.expiresAt < new Date() ? "expired" : i.uses >= i.maxUses ? "used up" : "active";
      console.log(`${i.id}  ${i.uses}/${i.maxUses} used  expires ${i.expiresAt.toISOString()}  ${state}`);
    }
  });

withStorageOptions(invite.command("revoke").description("revoke an invite by id"))
  .argument("<id>", "the invite id from `invite list`")
  .action(async (id: string, options: StorageOptions) => {
    const revoked = await withServices(options, (s) => s.invites.revoke(id));
    if (!revoked) {
      console.error(`no active invite with id ${id}`);
      process.exitCode = 1;
      return;
    }
    console.log(`revoked ${id}`);
  });

const keys = program.command("keys").description("the sealed-sender trust root (clients pin its public key)");

/** Prints the trust root as `keys init` and `keys show` do. */
function printTrustRoot(publicKey: Uint8Array, fingerprint: string, json: boolean | undefined, note?: string): void {
  const base64 = Buffer.from(publicKey).toString("base64");
  if (json) {
    console.log(JSON.stringify({ publicKey: base64, fingerprint }));
    return;
  }
  if (note) console.log(note);
  console.log(`trust root fingerprint: ${fingerprint}\ntrust root public key:  ${base64}\npublish the fingerprint out of band (website, printed notice) so users can check it`);
}

withStorageOptions(keys.command("init").description("create the trust root and server certificate in <data-dir>/keys if missing, and print the fingerprint"))
  .option("--json", "print JSON")
  .action(async (options: StorageOptions & { json?: boolean }) => {
    const { dataDir } = configFrom(options);
    const { fingerprint, keyDirectory, loadOrCreateKeys } = await import("../services/key-files.js");
    const { keys: loaded, created } = loadOrCreateKeys(dataDir);
    const note = `${created ? "created keys in" : "keys already present in"} ${keyDirectory(dataDir)}`;
    printTrustRoot(loaded.trustRoot.serialize(), fingerprint(loaded.trustRoot), options.json, note);
  });

withStorageOptions(keys.command("show").description("print the trust root's public key and fingerprint"))
  .option("--json", "print JSON")
  .action(async (options: StorageOptions & { json?: boolean }) => {
    const { dataDir } = configFrom(options);
    const { fingerprint, keyDirectory, readTrustRoot } = await import("../services/key-files.js");
    const trustRoot = readTrustRoot(dataDir);
    if (!trustRoot) {
      console.error(`no trust root in ${keyDirectory(dataDir)}: run \`zimchat keys init\` (or start the server once)`);
      process.exitCode = 1;
      return;
    }
    printTrustRoot(trustRoot.serialize(), fingerprint(trustRoot), options.json);
  });

registerAdminCommands(program, { withStorageOptions, configFrom });

program.parseAsync(process.argv).catch((error: unknown) => {
  // Configuration and plugin start-up failures say what to change; no stack trace.
  if (error instanceof ConfigError || (error as Error | null)?.name === "PluginError") console.error(`zimchat: ${(error as Error).message}`);
  else console.error(error);
  process.exit(1);
});
