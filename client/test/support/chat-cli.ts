/**
 * Driving the real `zimchat-chat` binary as child processes, the way people
 * and scripts do: run a command to its end, or start one that keeps running
 * (link, chat, receive --wait) and talk to it while it runs.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";

const bin = fileURLToPath(new URL("../../../bin/zimchat-chat.js", import.meta.url));

export interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

export type Line = Record<string, unknown> & { type: string };

// Children print clock times in UTC; the CLI's own variables of whoever runs the tests must not leak in.
const { ZIMCHAT_PROFILE: _profile, ZIMCHAT_SERVER: _server, ZIMCHAT_INVITE: _invite, ...inherited } = process.env;
export const childEnv = { ...inherited, TZ: "UTC" };

/** Where and how a command runs: its working directory, extra environment variables, and variables to remove. */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  unset?: string[];
}

/** Runs `zimchat-chat args` to the end (stdin closed, or fed `input`), in `cwd` when given. */
export function cli(args: string[], input?: string, options: string | RunOptions = {}): Promise<Exit> {
  const { cwd, env = {}, unset = [] } = typeof options === "string" ? { cwd: options } : options;
  const base: Record<string, string | undefined> = { ...childEnv, ...env };
  for (const name of unset) delete base[name];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: base,
      stdio: ["pipe", "pipe", "pipe"],
      ...(cwd ? { cwd } : {}),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

/** A `zimchat-chat` that keeps running, to talk to while it runs. */
export interface Running {
  child: ChildProcessWithoutNullStreams;
  /** Resolves with everything printed so far once stdout contains `text`; rejects if the process ends first. */
  seen(text: string): Promise<string>;
  /** Resolves with everything it printed once it has exited. */
  exited: Promise<Exit>;
}

export function start(args: string[]): Running {
  const child = spawn(process.execPath, [bin, ...args], { env: childEnv, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let waiters: { text: string; resolve: (out: string) => void; reject: (error: Error) => void }[] = [];
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
    for (const w of waiters.filter((w) => stdout.includes(w.text))) w.resolve(stdout);
    waiters = waiters.filter((w) => !stdout.includes(w.text));
  });
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const exited = new Promise<Exit>((resolve) =>
    child.once("close", (code) => {
      clearTimeout(timer);
      for (const w of waiters)
        w.reject(new Error(`exited (${code}) before printing ${JSON.stringify(w.text)}:\n${stderr}${stdout}`));
      resolve({ code, stdout, stderr });
    }),
  );
  const seen = (text: string): Promise<string> =>
    stdout.includes(text)
      ? Promise.resolve(stdout)
      : new Promise((resolve, reject) => waiters.push({ text, resolve, reject }));
  return { child, seen, exited };
}

/** The JSON lines a `--json` run printed; asserts that it printed nothing else, nowhere else. */
export function lines(exit: Exit | string): Line[] {
  const stdout = typeof exit === "string" ? exit : exit.stdout;
  if (typeof exit !== "string") assert.equal(exit.stderr, "", "--json prints nothing on stderr");
  return stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Line);
}

/** Like {@link lines}, for a command that must succeed. */
export function ok(exit: Exit): Line[] {
  assert.equal(exit.code, 0, `exit 0 expected:\n${exit.stderr}${exit.stdout}`);
  return lines(exit);
}

/** Like {@link lines}, for a command that must fail with exit code 1: its one error line. */
export function failed(exit: Exit): Line {
  assert.equal(exit.code, 1, `exit 1 expected:\n${exit.stderr}${exit.stdout}`);
  const out = lines(exit);
  assert.equal(out.at(-1)?.type, "error", JSON.stringify(out));
  return out.at(-1)!;
}

/** Lines of the given types only (receipts, device notices and such arrive with background timing). */
export const only = (all: Line[], ...types: string[]): Line[] => all.filter((l) => types.includes(l.type));
