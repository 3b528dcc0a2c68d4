/**
 * A real IRC server for bridge tests: ngircd with a throwaway config on a
 * loopback port, as a child process stopped by PID.
 *
 * Flood protection stays at ngircd's defaults (ngircd 26, `src/ngircd/conn.c`
 * and `defines.h`; none of it is configurable), so a bridge is tested against
 * what a real network does to a fast sender:
 * - a user connection gets at most 3 commands handled per pass of the main
 *   loop (`MAX_COMMANDS`), and once it has sent 256 bytes within a second
 *   (`COMMAND_LEN / 2`) or hit those 3 commands, it gets a 1 s penalty:
 *   further lines wait in its read buffer and the kernel's. ngircd delays a
 *   flooder rather than kicking it, so lines arrive late and in bursts;
 * - a line longer than 512 bytes with CR-LF closes the connection
 *   ("Request too long");
 * - more than 2,048 unhandled bytes in the read buffer close it
 *   ("Receive buffer space exhausted"), and so do 32 KiB queued for a client
 *   that does not read ("Write buffer space exhausted").
 * Other limits set here: MaxNickLength 30 (the default is 9, too short for
 * puppets such as `alice[zim]`), MaxConnectionsIP 0 (no per-IP limit: every
 * puppet connects from 127.0.0.1; the default is 5), MaxJoins 0 (no limit).
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../child-homeserver.js";
import {
  findBinary,
  removeOnExit,
  spawnTracked,
  stopTracked,
  waitForPorts,
  type Availability,
  type ChatServerProcess,
  type TrackedChild,
} from "./server-process.js";

/** Options of {@link startNgircd}. */
export interface NgircdOptions {
  /** Channels that exist from the start (ngircd `[Channel]` sections, modes `+nt`). @default [] */
  channels?: string[];
  /** The port to listen on. @default a free port */
  port?: number;
  /** The directory for the config (kept on stop when given). @default a new temporary directory */
  dir?: string;
}

/** A running ngircd (`restart` writes the config again after `stop`). */
export interface NgircdServer extends ChatServerProcess {
  host: "127.0.0.1";
  port: number;
  /** `irc://127.0.0.1:<port>` */
  url: string;
  /** The server's name in its replies (`irc.zimchat.test`). */
  name: string;
}

/** Whether ngircd is installed, and if not, what to install. */
export function ngircdAvailable(): Availability {
  if (findBinary("ngircd")) return { available: true, reason: undefined };
  return { available: false, reason: "ngircd is not installed (apt-get install --no-install-recommends ngircd)" };
}

const serverName = "irc.zimchat.test";

function config(port: number, channels: string[]): string {
  const channelSections = channels.map(
    (name) => `[Channel]\n\tName = ${name}\n\tModes = +nt\n\tTopic = ZimChat test channel\n`,
  );
  return [
    "# Written by @zimchat/testing/chat-servers: a throwaway test server.",
    "[Global]",
    `\tName = ${serverName}`,
    "\tInfo = ZimChat test IRC server",
    "\tListen = 127.0.0.1",
    `\tPorts = ${port}`,
    "\tMotdPhrase = ZimChat test server",
    "[Limits]",
    "\tMaxConnectionsIP = 0",
    "\tMaxJoins = 0",
    "\tMaxNickLength = 30",
    "[Options]",
    "\tPAM = no",
    "\tIdent = no",
    "\tDNS = no",
    ...channelSections,
    "",
  ].join("\n");
}

/**
 * Starts ngircd on 127.0.0.1 with a throwaway config and resolves once its
 * port accepts connections. As root, ngircd drops to `nobody` by itself.
 *
 * @example
 * const irc = await startNgircd({ channels: ["#zimchat"] });
 * try {
 *   // connect an IRC client to 127.0.0.1:irc.port
 * } finally {
 *   await irc.stop();
 * }
 */
export async function startNgircd(options: NgircdOptions = {}): Promise<NgircdServer> {
  const binary = findBinary("ngircd");
  if (!binary) throw new Error(ngircdAvailable().reason);
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "zimchat-ngircd-"));
  const port = options.port ?? (await freePort());
  let forgetDir = ownDir ? removeOnExit(dir) : () => false;
  const conf = join(dir, "ngircd.conf");

  /** Writes the config (again, after a stop removed it) and has ngircd check it. */
  function prepare(): void {
    mkdirSync(dir, { recursive: true });
    // ngircd reads its config as root, then runs as nobody: keep our own directory readable.
    if (ownDir) chmodSync(dir, 0o755);
    writeFileSync(conf, config(port, options.channels ?? []), { mode: 0o644 });
    const check = spawnSync(binary!, ["--configtest", "-f", conf], { encoding: "utf8", timeout: 10_000 });
    if (check.status !== 0)
      throw new Error(
        `ngircd --configtest -f ${conf} failed (${check.error?.message ?? `exit ${check.status}`}):\n${check.stdout}${check.stderr}`,
      );
  }

  let tracked: TrackedChild;
  async function launch(): Promise<void> {
    if (!existsSync(conf)) {
      if (ownDir) forgetDir = removeOnExit(dir);
      prepare();
    }
    tracked = spawnTracked(binary!, ["-n", "-f", conf]);
    try {
      await waitForPorts(tracked, [port], "ngircd");
    } catch (error) {
      await stopTracked(tracked, "SIGKILL");
      throw error;
    }
  }
  try {
    await launch();
  } catch (error) {
    if (ownDir) rmSync(dir, { recursive: true, force: true });
    forgetDir();
    throw error;
  }

  return {
    host: "127.0.0.1",
    port,
    get pid() {
      return tracked.pid;
    },
    url: `irc://127.0.0.1:${port}`,
    dir,
    name: serverName,
    get output() {
      return tracked.output;
    },
    async stop() {
      await stopTracked(tracked, "SIGTERM");
      if (ownDir) rmSync(dir, { recursive: true, force: true });
      forgetDir();
    },
    async kill() {
      await stopTracked(tracked, "SIGKILL");
    },
    async restart() {
      await stopTracked(tracked, "SIGTERM");
      await launch();
    },
  };
}
