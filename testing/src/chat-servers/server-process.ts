/**
 * What ngircd and Prosody share: finding a binary, starting it as a tracked
 * child, waiting for its ports, and stopping it by PID. Every child started
 * here is SIGKILLed when the test process exits, so a failed test leaves no
 * server behind.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { accessSync, constants, rmSync } from "node:fs";
import { connect } from "node:net";
import { delimiter, join } from "node:path";
import { createInterface } from "node:readline";

/** What a running chat server (ngircd, Prosody) offers a test: its process; stopping, crashing, restarting it. */
export interface ChatServerProcess {
  /** PID of the server process itself (not a wrapper). */
  readonly pid: number;
  /** Its temporary directory: config, data, log. */
  dir: string;
  /** Every line it wrote to stdout and stderr since the last (re)start. */
  readonly output: string[];
  /** SIGTERM, SIGKILL after 5 s; resolves once it has exited. Removes the temporary directory. */
  stop(): Promise<void>;
  /** SIGKILL (a crash); resolves once it has exited. Keeps the directory and data for `restart`. */
  kill(): Promise<void>;
  /** Starts it again on the same port(s): after `kill` with its data, after `stop` afresh (it stops a running one). */
  restart(): Promise<void>;
}

/** Whether a server can start on this machine, and if not, why (hand `reason` to node:test's `skip`). */
export interface Availability {
  available: boolean;
  /** Why it cannot start (what to install), or undefined when it can. */
  reason: string | undefined;
}

/**
 * Why tests that need a chat server skip here, or undefined when they run:
 * they run once, in the SQLite pass of the suite (no homeserver database is
 * what they test), and where the server must be present (`.ci/run` sets
 * ZIMCHAT_TEST_CHAT_SERVERS=required) never for a missing binary: starting
 * it then fails and says what is not installed.
 */
export function chatServerSkip(availability: Availability): string | undefined {
  if (process.env.ZIMCHAT_TEST_DATABASE_URL?.startsWith("postgres"))
    return "the chat-server tests run once, in the SQLite pass of the suite";
  if (process.env.ZIMCHAT_TEST_CHAT_SERVERS === "required") return undefined;
  return availability.reason;
}

/** Where `name` is on PATH or in the sbin directories (a non-root PATH often lacks them), or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs.filter(Boolean)) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Children still running; SIGKILLed on exit. */
const live = new Set<ChildProcess>();
/** Temporary directories of servers not stopped yet; removed on exit. */
const tempDirs = new Set<string>();
let exitHandlerInstalled = false;

/** SIGKILLs every live child and deletes every temporary directory, synchronously. */
function cleanUpNow(): void {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  // 'exit' handlers must be synchronous: a signal and a synchronous delete are all there is time for.
  process.on("exit", cleanUpNow);
  // A signal that kills node (a test runner's timeout) runs no 'exit' handler: clean up, then die of the same signal.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      cleanUpNow();
      process.off(signal, onSignal);
      // Only when nothing else handles the signal: then node's default (exit) is what this listener replaced.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/**
 * Removes `dir` when this process exits, for a test that ends without
 * stopping its server; `stop()` removes it itself and calls the returned
 * function.
 */
export function removeOnExit(dir: string): () => void {
  installExitHandler();
  tempDirs.add(dir);
  return () => tempDirs.delete(dir);
}

/** A server child process and the lines it wrote. */
export interface TrackedChild {
  child: ChildProcess;
  pid: number;
  /** Resolves once the process has exited (never rejects). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every line it wrote to stdout and stderr. */
  output: string[];
}

/** Spawns `command` as a tracked child whose stdout and stderr lines are kept. */
export function spawnTracked(command: string, args: string[], options: SpawnOptions = {}): TrackedChild {
  installExitHandler();
  const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => output.push(line));
  createInterface({ input: child.stderr! }).on("line", (line) => output.push(line));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    // A spawn failure (ENOENT, EACCES) emits 'error' and no 'exit'.
    child.once("error", (error) => {
      output.push(String(error));
      resolve({ code: null, signal: null });
    });
  });
  live.add(child);
  void exited.then(() => live.delete(child));
  if (child.pid === undefined) {
    // 'error' follows on the next tick; the caller sees the exit.
    return { child, pid: -1, exited, output };
  }
  return { child, pid: child.pid, exited, output };
}

/**
 * Signals the child and resolves once it has exited. With SIGTERM, it gets
 * `graceMs` to exit before it is SIGKILLed.
 */
export async function stopTracked(
  tracked: TrackedChild,
  signal: "SIGTERM" | "SIGKILL",
  graceMs = 5_000,
): Promise<void> {
  if (tracked.child.exitCode !== null || tracked.child.signalCode !== null) return;
  tracked.child.kill(signal);
  if (signal === "SIGTERM") {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), graceMs)));
    const result = await Promise.race([tracked.exited, timedOut]);
    clearTimeout(timer);
    if (result === "timeout") tracked.child.kill("SIGKILL");
  }
  await tracked.exited;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` right now. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * Resolves once every port accepts connections; rejects with the child's
 * output if it exits first or `timeoutMs` passes.
 */
export async function waitForPorts(
  tracked: TrackedChild,
  ports: number[],
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void tracked.exited.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`${what} exited before listening:\n${tracked.output.join("\n")}`);
    const open = await Promise.all(ports.map(accepts));
    if (open.every(Boolean)) return;
    if (Date.now() > deadline)
      throw new Error(
        `${what} did not listen on ${ports.join(", ")} within ${timeoutMs} ms:\n${tracked.output.join("\n")}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
