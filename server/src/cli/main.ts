import { Command, InvalidArgumentError, Option } from "commander";
import {
  configFileOption,
  configReference,
  loadConfig,
  optionSpecs,
  redactedConfig,
  type LoadedConfig,
  type OptionSpec,
} from "../config-options.js";
import { ConfigError, type ServerConfig } from "../config.js";
import { parseDatabaseUrl } from "../db/database-url.js";
import type { Services } from "../services/index.js";
import { serverVersion } from "../version.js";
import { registerAdminCommands } from "./admin.js";
import { duration, positiveInt } from "./arguments.js";
import { errorLine } from "./error-line.js";

// Files the server creates (database, WAL, keys, attachments) are private to
// its user: 0600 files, 0700 directories, before anything is opened.
process.umask(0o077);

// The server, Prisma and libsignal load only in the commands that use them,
// so `--help` and argument errors answer at once.

// The only module that reads the environment (through commander's .env()):
// everything below it is handed a ServerConfig.

type StorageOptions = Record<string, unknown> & { config?: string };

/**
 * One table option as a commander flag: no commander default (it would mask env and file); help shows the default and
 * the variable.
 */
function flagOf(spec: OptionSpec): Option {
  return new Option(
    spec.flag!,
    `${spec.meaning.replace(/`/g, "")} (default: ${spec.defaultText}${spec.env ? `; env ${spec.env}` : ""})`,
  );
}

/**
 * Adds `--config` and the table's storage options (data dir, database URL): every command that opens the database has
 * them.
 */
function withStorageOptions(command: Command): Command {
  command.addOption(
    new Option(
      configFileOption.flag,
      `JSON config file: every option below by its file key (env ${configFileOption.env}; see \`zimchat config reference\`)`,
    ),
  );
  for (const spec of optionSpecs) if (spec.storage && spec.flag) command.addOption(flagOf(spec));
  return command;
}

/** Flag > env > file > default, through the one option table. */
function loadFrom(options: StorageOptions): LoadedConfig {
  return loadConfig({ flags: options, env: process.env, file: options.config ?? process.env[configFileOption.env] });
}

function configFrom(options: StorageOptions): ServerConfig {
  return loadFrom(options).config;
}

const program = new Command()
  .name("zimchat")
  .description("ZimChat homeserver: end-to-end encrypted messaging your community runs itself")
  .version(serverVersion)
  // A mistake is one line on stderr (commander's own errors too), with where to look.
  .configureOutput({
    outputError: (text, write) =>
      write(
        `zimchat: ${text
          .replace(/^error: /, "")
          .replace(/\s+/g, " ")
          .trim()} (see --help)\n`,
      ),
  });

const serve = withStorageOptions(
  program.command("serve").description("run the homeserver (applies pending migrations first)"),
);
for (const spec of optionSpecs) if (!spec.storage && spec.flag) serve.addOption(flagOf(spec));
serve.action(async (options: StorageOptions) => {
  const config = configFrom(options);
  const { createLogger } = await import("../logger.js");
  const { openHomeserver } = await import("../app.js");
  const logger = createLogger(config.logLevel);
  const server = await openHomeserver(config, logger);
  // A port in use (or not ours to take) is a one-line answer, after the database is closed again.
  server.httpServer.once("error", (error: NodeJS.ErrnoException) => {
    if (server.httpServer.listening) return;
    console.error(`zimchat: ${errorLine(error)}`);
    server.close().finally(() => process.exit(1));
  });
  server.httpServer.listen(config.port, config.host, () => {
    const address = server.httpServer.address();
    const port = typeof address === "object" && address ? address.port : config.port;
    // Start-up is always announced (scripts wait for this line), whatever the level.
    const announce = config.logLevel === "silent" ? logger : logger.child({}, { level: "info" });
    announce.info(
      {
        port,
        serverName: config.serverName,
        registration: config.registration,
        database: parseDatabaseUrl(config.databaseUrl).provider,
      },
      "listening",
    );
    announce.info(
      { fingerprint: server.services.certificates.trustRoot().fingerprint },
      "sealed-sender trust root (publish this fingerprint)",
    );
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

withStorageOptions(program.command("migrate").description("apply pending database migrations and exit")).action(
  async (options: StorageOptions) => {
    const config = configFrom(options);
    const { migrate } = await import("../db/migrate.js");
    const applied = await migrate(parseDatabaseUrl(config.databaseUrl));
    console.log(applied.length ? `applied: ${applied.join(", ")}` : "the database is up to date");
  },
);

withStorageOptions(
  program
    .command("seizure-report")
    .description("print what someone holding this server's disk learns, and check what they do not (read-only)"),
)
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
  .option("--uses <n>", "how many registrations it allows (at least 1)", positiveInt, 1)
  .option("--expires <duration>", "lifetime, e.g. 30m, 12h, 7d", duration, 7 * 86_400_000)
  .option("--json", "print JSON")
  .action(async (options: StorageOptions & { uses: number; expires: number; json?: boolean }) => {
    const created = await withServices(options, (s) =>
      s.invites.create({ maxUses: options.uses, expiresInMs: options.expires }),
    );
    if (options.json) console.log(JSON.stringify({ ...created, expiresAt: created.expiresAt.toISOString() }));
    else
      console.log(
        `${created.token}\n(id ${created.id}, ${created.maxUses} use(s), expires ${created.expiresAt.toISOString()})`,
      );
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
      const state = i.revokedAt
        ? "revoked"
        : i.expiresAt < new Date()
          ? "expired"
          : i.uses >= i.maxUses
            ? "used up"
            : "active";
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
  console.log(
    `trust root fingerprint: ${fingerprint}\ntrust root public key:  ${base64}\npublish the fingerprint out of band (website, printed notice) so users can check it`,
  );
}

withStorageOptions(
  keys
    .command("init")
    .description(
      "create the trust root and server certificate in <data-dir>/keys if missing, and print the fingerprint",
    ),
)
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

const identity = withStorageOptions(
  program
    .command("federation-identity")
    .description(
      "print this server's federation allowlist entry, <server-name>=sha256:<hex>, for peers that pin it (--federation-allow); creates <data-dir>/keys/federation/identity.key when missing",
    ),
);
identity.addOption(flagOf(optionSpecs.find((s) => s.key === "serverName")!));
identity
  .option("--json", "print JSON: { server, fingerprint, entry }")
  .addHelpText(
    "after",
    "\nGive the printed entry to the operators of the servers you federate with, out of band; they add it to their --federation-allow. Deleting identity.key makes a new identity at the next start: peers that pinned the old one refuse this server until they update the entry.",
  )
  .action(async (options: StorageOptions & { json?: boolean }) => {
    const { dataDir, serverName } = configFrom(options);
    const { identityFingerprint, loadIdentityKey } = await import("../federation/signing-keys.js");
    const fingerprint = identityFingerprint(loadIdentityKey(dataDir).publicKey);
    const entry = `${serverName}=${fingerprint}`;
    console.log(options.json ? JSON.stringify({ server: serverName, fingerprint, entry }) : entry);
  });

registerAdminCommands(program, { withStorageOptions, configFrom });

const configCommand = program
  .command("config")
  .description("the configuration: its reference, and a check of the effective one");

configCommand
  .command("reference")
  .description("print every option (file key, flag, environment variable, default, meaning) as a Markdown table")
  .action(() => console.log(configReference()));

const check = withStorageOptions(
  configCommand
    .command("check")
    .description("validate the configuration (flags, environment, file) and print the effective one, secrets redacted"),
);
for (const spec of optionSpecs) if (!spec.storage && spec.flag) check.addOption(flagOf(spec));
check.action((options: StorageOptions) => {
  const { config, sources } = loadFrom(options);
  console.log(JSON.stringify({ config: redactedConfig(config), sources }, null, 2));
});

program.parseAsync(process.argv).catch((error: unknown) => {
  // One line that says what to change; no stack trace (ZIMCHAT_DEBUG=1 adds it for unexpected errors).
  const expected =
    error instanceof ConfigError ||
    error instanceof InvalidArgumentError ||
    (error as Error | null)?.name === "PluginError";
  console.error(`zimchat: ${expected ? (error as Error).message.replace(/\s+/g, " ") : errorLine(error)}`);
  if (!expected && process.env.ZIMCHAT_DEBUG) console.error(error);
  process.exit(1);
});
