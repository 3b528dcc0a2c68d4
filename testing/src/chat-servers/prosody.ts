/**
 * A real XMPP server for bridge tests: Prosody with a throwaway config and
 * data directory, client (c2s) and component (XEP-0114) ports on loopback,
 * a MUC service, as a child process stopped by PID.
 *
 * Prosody refuses to run as root ("Refusing to run as root", then it stays
 * up half-broken), so as root it runs as the `prosody` user. It is spawned
 * with that uid and gid directly rather than through `runuser -u prosody`:
 * runuser forks and waits (a PAM session), so its PID is not Prosody's and
 * SIGKILLing it would leave Prosody running; spawned this way the child's PID
 * is Prosody's own. Not as root, it runs as the current user.
 */
import { execFile, spawnSync, type SpawnOptions } from "node:child_process";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
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

const execFileAsync = promisify(execFile);

/** Options of {@link startProsody}. */
export interface ProsodyOptions {
  /** The virtual host users live on. @default "example.test" */
  domain?: string;
  /** An external component (XEP-0114) that may connect to the component port (`bridge.example.test`). @default none */
  component?: { name: string; secret: string };
  /** Accounts registered before it starts. @default [] */
  users?: { username: string; password: string }[];
}

/** A running Prosody (`restart` after `stop` registers every account registered so far again). */
export interface ProsodyServer extends ChatServerProcess {
  /** The virtual host (`example.test`). */
  domain: string;
  /** The MUC service, `conference.<domain>`. */
  mucDomain: string;
  /** Client-to-server port on 127.0.0.1 (plaintext, SCRAM or PLAIN). */
  c2sPort: number;
  /**
   * Component (XEP-0114) port on 127.0.0.1. Prosody listens on it only when a
   * component is configured (`options.component`).
   */
  componentPort: number;
  /** Prosody's log (level info and up). */
  logFile: string;
  /** Registers an account on {@link ProsodyServer.domain} (`prosodyctl register`); works while it runs. */
  register(username: string, password: string): Promise<void>;
}

/** The uid and gid to run Prosody as: the `prosody` user when root, else undefined (the current user). */
function prosodyIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string): number | undefined => {
    const out = spawnSync("id", [flag, "prosody"], { encoding: "utf8" });
    return out.status === 0 ? Number(out.stdout.trim()) : undefined;
  };
  const uid = id("-u");
  const gid = id("-g");
  if (uid === undefined || gid === undefined)
    throw new Error("Prosody does not run as root and there is no prosody user");
  return { uid, gid };
}

/** Whether Prosody is installed (with its `prosody` user when this process is root), and if not, what to install. */
export function prosodyAvailable(): Availability {
  const install = "apt-get install --no-install-recommends prosody";
  for (const binary of ["prosody", "prosodyctl"]) {
    if (!findBinary(binary)) return { available: false, reason: `${binary} is not installed (${install})` };
  }
  try {
    prosodyIds();
  } catch (error) {
    return { available: false, reason: `${(error as Error).message} (${install} creates it)` };
  }
  return { available: true, reason: undefined };
}

/** A Lua string literal. */
function lua(value: string): string {
  return JSON.stringify(value);
}

function config(
  dir: string,
  domain: string,
  c2sPort: number,
  componentPort: number,
  component: ProsodyOptions["component"],
): string {
  return [
    "-- Written by @zimchat/testing/chat-servers: a throwaway test server.",
    `data_path = ${lua(join(dir, "data"))}`,
    `certificates = ${lua(join(dir, "certs"))}`,
    `log = { { levels = { min = "info" }, to = "file", filename = ${lua(join(dir, "prosody.log"))} } }`,
    'interfaces = { "127.0.0.1" }',
    'local_interfaces = { "127.0.0.1" }',
    `c2s_ports = { ${c2sPort} }`,
    `component_ports = { ${componentPort} }`,
    'component_interfaces = { "127.0.0.1" }',
    // No federation, no HTTP: nothing else listens, so parallel test servers cannot collide on 5269 or 5280.
    "s2s_ports = { }",
    "http_ports = { }",
    "https_ports = { }",
    // Plaintext on loopback: no certificates to make.
    "c2s_require_encryption = false",
    "s2s_require_encryption = false",
    "allow_unencrypted_plain_auth = true",
    'authentication = "internal_plain"',
    'storage = "internal"',
    'modules_enabled = { "roster", "saslauth", "disco", "ping", "posix" }',
    `VirtualHost ${lua(domain)}`,
    // Rooms stay as Prosody makes them: a new room is locked until its creator submits the configuration form.
    `Component ${lua(`conference.${domain}`)} "muc"`,
    ...(component ? [`Component ${lua(component.name)}`, `\tcomponent_secret = ${lua(component.secret)}`] : []),
    "",
  ].join("\n");
}

/**
 * Starts Prosody on 127.0.0.1 with a throwaway config and data directory,
 * registers `users`, and resolves once its client port (and its component
 * port, when a component is configured) accepts connections.
 *
 * @example
 * const xmpp = await startProsody({
 *   component: { name: "bridge.example.test", secret: "s3cret" },
 *   users: [{ username: "alice", password: "pw" }],
 * });
 * try {
 *   // @xmpp/client: service `xmpp://127.0.0.1:${xmpp.c2sPort}`, domain xmpp.domain
 *   // @xmpp/component: service `xmpp://127.0.0.1:${xmpp.componentPort}`
 * } finally {
 *   await xmpp.stop();
 * }
 */
export async function startProsody(options: ProsodyOptions = {}): Promise<ProsodyServer> {
  const prosody = findBinary("prosody");
  const prosodyctl = findBinary("prosodyctl");
  if (!prosody || !prosodyctl) throw new Error(prosodyAvailable().reason);
  const ids = prosodyIds();
  const domain = options.domain ?? "example.test";
  const dir = mkdtempSync(join(tmpdir(), "zimchat-prosody-"));
  let forgetDir = removeOnExit(dir);
  const cfg = join(dir, "prosody.cfg.lua");
  const logFile = join(dir, "prosody.log");
  const c2sPort = await freePort();
  let componentPort = await freePort();
  while (componentPort === c2sPort) componentPort = await freePort();
  const users = new Map<string, string>();
  const spawnOptions: SpawnOptions = { ...ids, env: { ...process.env, HOME: dir } };

  async function registerNow(username: string, password: string): Promise<void> {
    try {
      await execFileAsync(prosodyctl!, ["--config", cfg, "register", username, domain, password], {
        ...spawnOptions,
        timeout: 30_000,
      });
    } catch (error) {
      const { stdout, stderr, code } = error as { stdout?: string; stderr?: string; code?: unknown };
      const output = `${stdout ?? ""}${stderr ?? ""}`;
      // eslint-disable-next-line preserve-caught-error -- the caught error's message holds the password (command line)
      throw new Error(`prosodyctl register ${username} ${domain} failed (${String(code)}):\n${output}`);
    }
    users.set(username, password);
  }

  /** Writes the config and data directory (again, after a stop removed them), owned by the user Prosody runs as. */
  async function prepare(): Promise<void> {
    for (const sub of ["data", "certs"]) mkdirSync(join(dir, sub), { recursive: true });
    writeFileSync(cfg, config(dir, domain, c2sPort, componentPort, options.component));
    if (ids) chownTree(dir, ids.uid, ids.gid);
    for (const [username, password] of users) await registerNow(username, password);
  }

  let tracked: TrackedChild;
  async function launch(): Promise<void> {
    if (!existsSync(cfg)) {
      forgetDir = removeOnExit(dir);
      await prepare();
    }
    tracked = spawnTracked(prosody!, ["-F", "--config", cfg], spawnOptions);
    try {
      await waitForPorts(tracked, options.component ? [c2sPort, componentPort] : [c2sPort], "prosody");
    } catch (error) {
      await stopTracked(tracked, "SIGKILL");
      throw new Error(`${(error as Error).message}\n${readLog(logFile)}`, { cause: error });
    }
  }

  try {
    await prepare();
    for (const { username, password } of options.users ?? []) await registerNow(username, password);
    await launch();
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    forgetDir();
    throw error;
  }

  return {
    domain,
    mucDomain: `conference.${domain}`,
    c2sPort,
    componentPort,
    get pid() {
      return tracked.pid;
    },
    dir,
    logFile,
    get output() {
      return tracked.output;
    },
    async stop() {
      await stopTracked(tracked, "SIGTERM");
      rmSync(dir, { recursive: true, force: true });
      forgetDir();
    },
    async kill() {
      await stopTracked(tracked, "SIGKILL");
    },
    async restart() {
      await stopTracked(tracked, "SIGTERM");
      await launch();
    },
    register: registerNow,
  };
}

/** `chown -R` without a child process. */
function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) chownTree(child, uid, gid);
    else chownSync(child, uid, gid);
  }
}

/** The end of Prosody's log, for an error message. */
function readLog(file: string): string {
  try {
    return `${file}:\n${readFileSync(file, "utf8").split("\n").slice(-40).join("\n")}`;
  } catch {
    return "";
  }
}
