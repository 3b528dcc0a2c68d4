import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { Command, InvalidArgumentError, Option } from "commander";
import type {
  AccountListResponse,
  CreateInviteResponse,
  ErrorBody,
  InviteInfo,
  RotateCertificateResponse,
  FederationPeerList,
  ServerStats,
} from "@zimchat/protocol";
import type { ServerConfig } from "../config.js";
import { duration, int, positiveInt } from "./arguments.js";

/** What `zimchat admin` borrows from the main CLI module (restore works on the data directory, offline). */
export interface AdminCliHelpers {
  withStorageOptions(command: Command): Command;
  configFrom(options: { dataDir: string; databaseUrl?: string } & Record<string, unknown>): ServerConfig;
}

/** A failed admin call, with the message the CLI prints. */
export class AdminCliError extends Error {
  override name = "AdminCliError";
}

interface Connection {
  url: string;
  token?: string;
}

/** The `--url` and `--token` options of `zimchat admin`, whichever subcommand holds them. */
function connection(command: Command): Connection {
  const { url, token } = command.optsWithGlobals<{ url: string; token?: string }>();
  return token === undefined ? { url } : { url, token };
}

/**
 * Calls the running server's admin API.
 * @throws AdminCliError for an unreachable server, a refused token, the admin API being off, or a refusal
 *   (with its code)
 */
async function call(conn: Connection, method: string, path: string, body?: unknown): Promise<Response> {
  if (!conn.token)
    throw new AdminCliError("no admin token: pass --token or set ZIMCHAT_ADMIN_TOKEN (the server's --admin-token)");
  let res: Response;
  const url = new URL(path, conn.url);
  try {
    res = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${conn.token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw new AdminCliError(
      `cannot reach a ZimChat server at ${conn.url} (${cause}): is it running? (--url, ZIMCHAT_URL)`,
    );
  }
  if (res.ok) return res;
  const error = (await res.json().catch(() => null)) as ErrorBody | null;
  if (res.status === 401)
    throw new AdminCliError(`the server at ${conn.url} refused the admin token (check --token / ZIMCHAT_ADMIN_TOKEN)`);
  if (res.status === 404 && error?.message === "No such route") {
    throw new AdminCliError(
      `the server at ${conn.url} has no admin API: start it with --admin-token (ZIMCHAT_ADMIN_TOKEN)`,
    );
  }
  throw new AdminCliError(
    error ? `${error.message} (${error.code}, HTTP ${res.status})` : `HTTP ${res.status} from ${url.pathname}`,
  );
}

async function json<T>(conn: Connection, method: string, path: string, body?: unknown): Promise<T> {
  return (await (await call(conn, method, path, body)).json()) as T;
}

const encode = encodeURIComponent;

function print(value: unknown, asJson: boolean | undefined, text: () => string): void {
  console.log(asJson ? JSON.stringify(value) : text());
}

/** Runs an action, turning an AdminCliError into its message and exit code 1. */
function action<A extends unknown[]>(run: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args) => {
    try {
      await run(...args);
    } catch (error) {
      if (!(error instanceof AdminCliError) && (error as Error | null)?.name !== "RestoreError") throw error;
      console.error(`zimchat admin: ${(error as Error).message}`);
      process.exitCode = 1;
    }
  };
}

/**
 * Adds `zimchat admin ...`: commands that talk to a running server's admin
 * API (`--url`, `--token`), and `restore`, which works offline on the data
 * directory with the server stopped.
 */
export function registerAdminCommands(program: Command, helpers: AdminCliHelpers): void {
  const admin = program
    .command("admin")
    .description("administer a running server through its admin API (needs the server's --admin-token)")
    .addOption(new Option("--url <url>", "the server's base URL").env("ZIMCHAT_URL").default("http://127.0.0.1:8080"))
    .addOption(new Option("--token <token>", "the server's admin token").env("ZIMCHAT_ADMIN_TOKEN"));

  const invite = admin.command("invite").description("registration invites");
  invite
    .command("create")
    .description("create an invite and print its token (shown once)")
    .option("--uses <n>", "how many registrations it allows (at least 1)", positiveInt, 1)
    .option("--expires <duration>", "lifetime, e.g. 30m, 12h, 7d", duration, 7 * 86_400_000)
    .option("--json", "print JSON")
    .action(
      action(async (options: { uses: number; expires: number; json?: boolean }, command: Command) => {
        if (options.uses < 1) throw new InvalidArgumentError("--uses must be at least 1");
        const body = { maxUses: options.uses, expiresInSeconds: Math.round(options.expires / 1000) };
        const created = await json<CreateInviteResponse>(connection(command), "POST", "/admin/v1/invites", body);
        print(
          created,
          options.json,
          () => `${created.token}\n(id ${created.id}, ${created.maxUses} use(s), expires ${created.expiresAt})`,
        );
      }),
    );
  invite
    .command("list")
    .description("list invites (never their tokens)")
    .option("--json", "print JSON")
    .action(
      action(async (options: { json?: boolean }, command: Command) => {
        const { invites } = await json<{ invites: InviteInfo[] }>(connection(command), "GET", "/admin/v1/invites");
        print(invites, options.json, () =>
          invites.length
            ? invites
                .map((i) => {
                  const state = i.revokedAt
                    ? "revoked"
                    : new Date(i.expiresAt) < new Date()
                      ? "expired"
                      : i.uses >= i.maxUses
                        ? "used up"
                        : "active";
                  return `${i.id}  ${i.uses}/${i.maxUses} used  expires ${i.expiresAt}  ${state}`;
                })
                .join("\n")
            : "no invites",
        );
      }),
    );
  invite
    .command("revoke")
    .description("revoke an invite by id")
    .argument("<id>", "the invite id from `admin invite list`")
    .action(
      action(async (id: string, _options: unknown, command: Command) => {
        await call(connection(command), "DELETE", `/admin/v1/invites/${encode(id)}`);
        console.log(`revoked ${id}`);
      }),
    );

  admin
    .command("accounts")
    .description("list accounts (metadata only)")
    .option("--limit <n>", "accounts per page (1..500)", int, 100)
    .option("--cursor <id>", "start after this account id (the previous page's next cursor)")
    .option("--all", "follow the cursor to the last page")
    .option("--json", "print JSON (one page: { accounts, nextCursor })")
    .action(
      action(async (options: { limit: number; cursor?: string; all?: boolean; json?: boolean }, command: Command) => {
        const conn = connection(command);
        let cursor = options.cursor;
        const accounts: AccountListResponse["accounts"] = [];
        let next: string | null;
        do {
          const query = new URLSearchParams({ limit: String(options.limit), ...(cursor ? { cursor } : {}) });
          const page = await json<AccountListResponse>(conn, "GET", `/admin/v1/accounts?${query.toString()}`);
          accounts.push(...page.accounts);
          next = page.nextCursor;
          cursor = next ?? undefined;
        } while (options.all && next);
        print({ accounts, nextCursor: next }, options.json, () =>
          [
            ...accounts.map(
              (a) =>
                `${a.id}  ${a.username}  created ${a.created}  ${a.devices} device(s)  ${a.attachmentBytes} attachment bytes${a.disabled ? "  DISABLED" : ""}`,
            ),
            ...(accounts.length ? [] : ["no accounts"]),
            ...(next ? [`more: --cursor ${next}`] : []),
          ].join("\n"),
        );
      }),
    );

  const account = admin.command("account").description("disable, enable or delete one account (by username or id)");
  const accountAction = (name: string, description: string, method: string, suffix: string, done: string): void => {
    account
      .command(name)
      .description(description)
      .argument("<account>", "username or account id")
      .action(
        action(async (ref: string, _options: unknown, command: Command) => {
          await call(connection(command), method, `/admin/v1/accounts/${encode(ref)}${suffix}`);
          console.log(`${done} ${ref}`);
        }),
      );
  };
  accountAction(
    "disable",
    "disable the account: its devices cannot sign in and are disconnected (messages to it still queue)",
    "PUT",
    "/disabled",
    "disabled",
  );
  accountAction("enable", "enable a disabled account again", "DELETE", "/disabled", "enabled");
  accountAction(
    "delete",
    "delete the account with its devices, keys, queued messages and attachments; frees the username",
    "DELETE",
    "",
    "deleted",
  );

  admin
    .command("device")
    .description("linked devices")
    .command("remove")
    .description("remove a linked device (not the primary) with its keys and queue")
    .argument("<account>", "username or account id")
    .argument("<device-id>", "device id (2..127)")
    .action(
      action(async (ref: string, deviceId: string, _options: unknown, command: Command) => {
        await call(connection(command), "DELETE", `/admin/v1/accounts/${encode(ref)}/devices/${encode(deviceId)}`);
        console.log(`removed device ${deviceId} of ${ref}`);
      }),
    );

  admin
    .command("peers")
    .description(
      "federation: other servers relayed to, blocked or pinned, with outbox depth, backoff, pin and identity fingerprint",
    )
    .option("--json", "print JSON")
    .action(
      action(async (options: { json?: boolean }, command: Command) => {
        const list = await json<FederationPeerList>(connection(command), "GET", "/admin/v1/federation/peers");
        print(list, options.json, () =>
          list.peers.length
            ? list.peers
                .map((p) => {
                  const wait = p.nextAttemptAt > Date.now() ? Math.ceil((p.nextAttemptAt - Date.now()) / 1000) : 0;
                  const state = p.blocked ? "blocked" : wait ? `retry in ${wait} s (${p.failures} failures)` : "ok";
                  const identity = `${p.pinned ? "pinned" : "unpinned"} ${p.fingerprint ?? "(identity not seen)"}`;
                  return `${p.server}  pending ${p.pending}  ${state}  ${identity}`;
                })
                .join("\n")
            : "no peers yet",
        );
      }),
    );
  const peer = admin.command("peer").description("federation: block or unblock another server");
  for (const [name, method, done] of [
    ["block", "PUT", "blocked"],
    ["unblock", "DELETE", "unblocked"],
  ] as const) {
    peer
      .command(`${name} <server>`)
      .description(
        name === "block"
          ? "refuse a server both ways (403 peer_not_allowed); sends queued for it wait and expire unless unblocked"
          : "accept a blocked server again (the --federation policy still applies); sends queued for it go now",
      )
      .action(
        action(async (server: string, _options: unknown, command: Command) => {
          await call(connection(command), method, `/admin/v1/federation/peers/${encode(server)}/block`);
          console.log(`${done} ${server}`);
        }),
      );
  }

  admin
    .command("stats")
    .description("accounts, devices, queued envelopes and connected devices")
    .option("--json", "print JSON")
    .action(
      action(async (options: { json?: boolean }, command: Command) => {
        const stats = await json<ServerStats>(connection(command), "GET", "/admin/v1/stats");
        print(stats, options.json, () =>
          [
            `accounts:          ${stats.accounts} (${stats.disabledAccounts} disabled)`,
            `devices:           ${stats.devices}`,
            `queued envelopes:  ${stats.queuedEnvelopes}`,
            `connected devices: ${stats.connectedDevices}`,
          ].join("\n"),
        );
      }),
    );

  admin
    .command("backup")
    .description("download an online backup of the server's SQLite database (PostgreSQL: use pg_dump)")
    .argument("<out-file>", "where to write the backup (written to a temp file, then renamed)")
    .action(
      action(async (outFile: string, _options: unknown, command: Command) => {
        const res = await call(connection(command), "POST", "/admin/v1/backup");
        const temp = `${outFile}.part`;
        try {
          await pipeline(
            Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
            createWriteStream(temp, { mode: 0o600 }),
          );
          await rename(temp, outFile);
        } catch (error) {
          await rm(temp, { force: true });
          throw error;
        }
        console.log(
          `backup written to ${outFile}\n(the database only: copy <data-dir>/keys and the attachments directory as files too)`,
        );
      }),
    );

  helpers
    .withStorageOptions(
      admin
        .command("restore")
        .description(
          "put a backup in place of the SQLite database (offline: stop the server first); keeps the current one as zimchat.db.before-restore-<time>",
        ),
    )
    .argument("<backup-file>", "a file from `zimchat admin backup`")
    .option("--force", "restore even though the database's -wal file is not empty (a server may still be running)")
    .action(
      action(async (file: string, options: { dataDir: string; databaseUrl?: string; force?: boolean }) => {
        const config = helpers.configFrom(options);
        const { parseDatabaseUrl } = await import("../db/database-url.js");
        const target = parseDatabaseUrl(config.databaseUrl);
        if (target.provider !== "sqlite")
          throw new AdminCliError("restore covers SQLite only: restore PostgreSQL with pg_restore / psql");
        const { restoreSqlite } = await import("../db/sqlite-backup.js");
        const { previous } = restoreSqlite(file, target.path, { force: options.force === true });
        console.log(
          `restored ${file} to ${target.path}${previous ? `; the previous database is kept as ${previous}` : ""}`,
        );
      }),
    );

  admin
    .command("rotate-certificate")
    .description("replace the server key and certificate (next key id, same trust root: clients need nothing new)")
    .option("--json", "print JSON")
    .action(
      action(async (options: { json?: boolean }, command: Command) => {
        const rotated = await json<RotateCertificateResponse>(
          connection(command),
          "POST",
          "/admin/v1/certificate/rotate",
        );
        print(
          rotated,
          options.json,
          () =>
            `server certificate rotated: key id ${rotated.previousKeyId} -> ${rotated.keyId} (trust root unchanged: ${rotated.trustRootFingerprint})`,
        );
      }),
    );
}
