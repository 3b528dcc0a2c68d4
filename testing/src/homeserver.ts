import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { createLogger, openHomeserver, resolveConfig, type Homeserver, type ServerConfig } from "@zimchat/server";
import { MemoryLogger } from "@zimchat/plugin-sdk/bot";
import { TestUser } from "./test-user.js";

/** The server plugins option, as the homeserver's config types it. */
export type TestPlugins = ServerConfig["plugins"];

/** Options for {@link testHomeserver}. */
export interface TestHomeserverOptions {
  /** Who may register: everyone, or holders of an invite (the helpers create one per user and bot). @default "open" */
  registration?: "open" | "invite";
  /** Server plugins, passed to the homeserver's config as they are. */
  plugins?: TestPlugins;
  /**
   * Any other homeserver option. A fixed `port` with a `databaseUrl` and
   * `dataDir` of the test's own lets it restart a homeserver on the same
   * address and data (clients keep their stores). @default port 0 (a free one)
   */
  config?: Partial<ServerConfig>;
  /**
   * The database: a fresh schema of this PostgreSQL, or a temporary SQLite
   * file. @default `ZIMCHAT_TEST_DATABASE_URL` when it starts with
   * `postgres`, else SQLite
   */
  databaseUrl?: string;
  /** The homeserver's log level (its logs go to stdout). @default "silent" */
  logLevel?: ServerConfig["logLevel"];
}

/**
 * What a bot factory gets from {@link TestHomeserver.bot}: spread it into `new Bot(...)` or your
 * `create...Bot(options)`.
 */
export interface TestBotOptions {
  server: string;
  /** A fresh directory, or the one given (to restart a bot on its store). */
  dir: string;
  /** Only when given to `hs.bot`: otherwise the factory's default username applies. */
  username?: string;
  inviteToken?: string;
  /** Keeps the bot's log lines (`logger.waitFor(/…/)`). */
  logger: MemoryLogger;
}

/** What the helpers need of a bot: any `Bot<C>`, whatever its context type. */
export interface StartableBot {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Builds a bot (not started). */
export type BotFactory<B extends StartableBot> = (options: TestBotOptions) => B | Promise<B>;

/** An in-process homeserver with helpers to add users and bots; `close()` stops everything it made. */
export interface TestHomeserver {
  /** The base URL (127.0.0.1, a free port). */
  readonly url: string;
  /** The homeserver's resolved config. */
  readonly config: ServerConfig;
  /** The running homeserver (services, database) for checks a test may need. */
  readonly server: Homeserver;
  /** Registers a user (a real device, in memory) and connects it. */
  user(username: string): Promise<TestUser>;
  /**
   * Builds a bot with `factory` (given a server URL, a fresh directory unless
   * `options.dir`, an invite when needed, and a {@link MemoryLogger}),
   * starts it, and stops it at `close()`.
   */
  bot<B extends StartableBot>(
    factory: BotFactory<B>,
    options?: { username?: string; dir?: string; logger?: MemoryLogger },
  ): Promise<B>;
  /** An invite token (for `registration: "invite"`). */
  invite(uses?: number): Promise<string>;
  /** A new empty directory inside the homeserver's temporary directory. */
  tempDir(name?: string): string;
  /** Stops every bot and user it made, the homeserver, and deletes its files and database schema. */
  close(): Promise<void>;
}

/**
 * Starts a homeserver in this process for tests: SQLite in a temporary
 * directory (or a fresh PostgreSQL schema), open registration, no rate
 * limits, listening on 127.0.0.1 on a free port.
 * @example
 * const hs = await testHomeserver();
 * try {
 *   const alice = await hs.user("alice");
 *   const bot = await hs.bot(createEchoBot);
 *   await alice.send(bot.username, "hi");
 *   assert.equal((await alice.nextMessage()).text, "hi");
 * } finally {
 *   await hs.close();
 * }
 */
export async function testHomeserver(options: TestHomeserverOptions = {}): Promise<TestHomeserver> {
  const root = mkdtempSync(join(tmpdir(), "zimchat-test-hs-"));
  const base = options.databaseUrl ?? process.env.ZIMCHAT_TEST_DATABASE_URL;
  const postgres = base?.startsWith("postgres") ? base : undefined;
  const schema = `t_${randomBytes(6).toString("hex")}`;
  let databaseUrl = `file:${join(root, "zimchat.db")}`;
  if (postgres) {
    const url = new URL(postgres);
    url.searchParams.set("schema", schema);
    databaseUrl = url.toString();
  }
  const dropSchema = async (): Promise<void> => {
    if (!postgres) return;
    const client = new pg.Client({ connectionString: postgres });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await client.end();
    }
  };
  const partial: Partial<ServerConfig> = {
    dataDir: join(root, "data"),
    databaseUrl,
    registration: options.registration ?? "open",
    rateLimits: false,
    logLevel: options.logLevel ?? "silent",
    host: "127.0.0.1",
    port: 0,
    ...options.config,
    // Handed over as given: the homeserver's config checks them.
    ...(options.plugins !== undefined ? { plugins: options.plugins } : {}),
  };
  const config = resolveConfig(partial);
  let server: Homeserver;
  try {
    server = await openHomeserver(config, createLogger(config.logLevel));
    await new Promise<void>((resolve, reject) => {
      server.httpServer.once("error", reject);
      server.httpServer.listen(config.port, "127.0.0.1", () => resolve());
    });
  } catch (error) {
    await dropSchema().catch(() => {});
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
  const url = `http://127.0.0.1:${(server.httpServer.address() as AddressInfo).port}`;
  const users: TestUser[] = [];
  const bots: StartableBot[] = [];
  let dirs = 0;

  const hs: TestHomeserver = {
    url,
    config,
    server,
    async invite(uses = 1) {
      return (await server.services.invites.create({ maxUses: uses, expiresInMs: 3_600_000 })).token;
    },
    tempDir(name = "dir") {
      const dir = join(root, `${name.replace(/[^A-Za-z0-9_-]/g, "_")}-${++dirs}`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      return dir;
    },
    async user(username) {
      const user = await TestUser.register(
        url,
        username,
        config.registration === "invite" ? await hs.invite() : undefined,
      );
      users.push(user);
      return user;
    },
    async bot(factory, botOptions = {}) {
      const dir = botOptions.dir ?? hs.tempDir(botOptions.username ?? "bot");
      const bot = await factory({
        server: url,
        dir,
        ...(botOptions.username !== undefined ? { username: botOptions.username } : {}),
        ...(config.registration === "invite" ? { inviteToken: await hs.invite() } : {}),
        logger: botOptions.logger ?? new MemoryLogger(),
      });
      bots.push(bot);
      await bot.start();
      return bot;
    },
    async close() {
      const errors: unknown[] = [];
      for (const bot of bots) await bot.stop().catch((e: unknown) => errors.push(e));
      for (const user of users) await user.close().catch((e: unknown) => errors.push(e));
      await server.close().catch((e: unknown) => errors.push(e));
      await dropSchema().catch((e: unknown) => errors.push(e));
      rmSync(root, { recursive: true, force: true });
      if (errors.length) throw new AggregateError(errors, "closing the test homeserver failed");
    },
  };
  return hs;
}
