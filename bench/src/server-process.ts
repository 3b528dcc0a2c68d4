/**
 * Servers under test run as child processes, so their memory and CPU are
 * measured apart from the client harness.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import {
  gcDone,
  gcRequest,
  loopDelayRead,
  loopDelayReport,
  loopDelayStart,
  profileStart,
  profileStarted,
  profileStop,
  profileStopped,
  type LoopDelayFigures,
} from "./child-hook.js";

/** How to start one server child. */
export interface ServerCommand {
  /** A short name for logs ("relay", "homeserver"). */
  name: string;
  /** The script node runs, and its arguments. */
  script: string;
  args: string[];
  /** Extra node options for the child (for example `--cpu-prof` when profiling). @default [] */
  nodeArgs?: string[];
  /** Working directory of the child. @default this process's */
  cwd?: string;
  /** How long to wait for the `listening` line. @default 60000 */
  readyTimeoutMs?: number;
}

/** The child's answer to a GC request. */
export interface GcReport {
  /** False when no collection ran (no `--expose-gc`, or no answer within 10 s). */
  collected: boolean;
  /** `process.memoryUsage()` in the child after the collection. */
  memory: NodeJS.MemoryUsage | undefined;
}

/** A running server child. */
export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Log lines at warn level or above that the child printed so far (the first few are kept). */
  readonly problems: string[];
  /** How many such lines in all. */
  problemCount(): number;
  /** VmRSS from /proc, in bytes. */
  rssBytes(): Promise<number>;
  /** User + system CPU time of the whole process (all threads), in ms, from /proc. */
  cpuMs(): Promise<number>;
  /** Asks the child for a full GC over IPC and reports its memory after it. */
  collectGarbage(): Promise<GcReport>;
  /** Clears the child's event-loop delay histogram and starts recording (returns at once). */
  startLoopDelay(): void;
  /** Stops recording and reads the histogram; undefined when nothing was recorded or the child did not answer. */
  readLoopDelay(): Promise<LoopDelayFigures | undefined>;
  /** Starts CPU profiles in the child (main thread and workers); the main thread's goes to `file` on stop. */
  startProfile(file: string): Promise<void>;
  /** Stops the profiles and resolves with the paths of the `.cpuprofile` files written. */
  stopProfile(): Promise<string[]>;
  /** SIGTERM, then SIGKILL after a grace period. */
  stop(): Promise<void>;
}

const childHookUrl = new URL("./child-hook.js", import.meta.url).href;
/** Linux reports process times in clock ticks; USER_HZ is 100 on every Linux ABI node runs on. */
const msPerTick = 10;
const keptProblems = 20;

/** Starts a server child and resolves once it printed its `listening` line. */
export async function startServer(command: ServerCommand): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    ["--expose-gc", "--import", childHookUrl, ...(command.nodeArgs ?? []), command.script, ...command.args],
    {
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      ...(command.cwd === undefined ? {} : { cwd: command.cwd }),
    },
  );
  const problems: string[] = [];
  let problemCount = 0;
  const tail: string[] = [];
  const note = (line: string): void => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
  };
  const problem = (line: string): void => {
    problemCount += 1;
    if (problems.length < keptProblems) {
      problems.push(line);
      process.stderr.write(`[${command.name}] ${line}\n`);
    }
  };

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new Error(
          `${command.name} did not print "listening" within ${command.readyTimeoutMs ?? 60_000} ms:\n${tail.join("\n")}`,
        ),
      );
    }, command.readyTimeoutMs ?? 60_000);
    let ready = false;
    createInterface({ input: child.stdout! }).on("line", (line) => {
      note(line);
      const parsed = parseLogLine(line);
      if (!ready && parsed?.msg === "listening" && typeof parsed.port === "number") {
        ready = true;
        clearTimeout(timer);
        resolve(parsed.port);
      } else if (parsed === undefined || typeof parsed.level !== "number" || parsed.level >= 40) {
        problem(line);
      }
    });
    createInterface({ input: child.stderr! }).on("line", (line) => {
      note(line);
      problem(line);
    });
    child.once("exit", (code, signal) => {
      if (!ready) {
        clearTimeout(timer);
        reject(new Error(`${command.name} exited (${code ?? signal}) before listening:\n${tail.join("\n")}`));
      }
    });
    child.once("error", reject);
  });

  const pid = child.pid!;
  return {
    name: command.name,
    pid,
    port,
    url: `http://127.0.0.1:${port}`,
    problems,
    problemCount: () => problemCount,
    rssBytes: async () => readRssBytes(pid),
    cpuMs: async () => readCpuMs(pid),
    collectGarbage: () => requestGc(child),
    startLoopDelay: () => void child.send({ type: loopDelayStart }),
    readLoopDelay: async () => {
      const reply = await ask(child, { type: loopDelayRead }, loopDelayReport, 10_000);
      return (reply as { figures?: LoopDelayFigures } | undefined)?.figures;
    },
    startProfile: async (file) => {
      const reply = (await ask(child, { type: profileStart, file }, profileStarted, 10_000)) as
        { ok: boolean; error?: string } | undefined;
      if (reply?.ok !== true)
        throw new Error(`${command.name}: profiler did not start: ${reply?.error ?? "no answer"}`);
    },
    stopProfile: async () => {
      // Serialising a long profile takes a while in a busy child.
      const reply = await ask(child, { type: profileStop }, profileStopped, 60_000);
      return (reply as { files?: string[] } | undefined)?.files ?? [];
    },
    stop: () => stopChild(child),
  };
}

/** The path of a compiled bench module, for use as a child's script. */
export function benchModulePath(name: string): string {
  return fileURLToPath(new URL(`./${name}`, import.meta.url));
}

function parseLogLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function readRssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

async function readCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * msPerTick;
}

async function requestGc(child: ChildProcess): Promise<GcReport> {
  const reply = (await ask(child, { type: gcRequest }, gcDone, 10_000)) as
    { collected?: unknown; memory?: NodeJS.MemoryUsage } | undefined;
  return { collected: reply?.collected === true, memory: reply?.memory };
}

/** Sends `message` over IPC and resolves with the first answer of type `replyType` (undefined after `timeoutMs`). */
function ask(child: ChildProcess, message: object, replyType: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve) => {
    const onMessage = (reply: unknown): void => {
      if (typeof reply === "object" && reply !== null && (reply as { type?: unknown }).type === replyType)
        finish(reply);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const finish = (reply: unknown): void => {
      clearTimeout(timer);
      child.off("message", onMessage);
      resolve(reply);
    };
    child.on("message", onMessage);
    child.send(message);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}
