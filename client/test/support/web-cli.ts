/**
 * `zimchat-chat web` as a child process, the way a person starts it: the real
 * binary with `--json`, read until it prints its `webReady` line (the link with
 * the launch token), stopped with SIGTERM as Ctrl-C would.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { childEnv } from "./chat-cli.js";

const bin = fileURLToPath(new URL("../../../bin/zimchat-chat.js", import.meta.url));

/** A running `zimchat-chat web`. */
export interface WebCli {
  child: ChildProcessWithoutNullStreams;
  /** `http://127.0.0.1:<port>/#token=…`, as printed. */
  url: string;
  port: number;
  /** Everything it printed (stdout and stderr), for failure messages. */
  output: string[];
  /** SIGTERM, then resolves with the exit code once it has exited (SIGKILL after 10 s). */
  stop(): Promise<number | null>;
}

/** Starts `zimchat-chat web --profile <profile> --json ...args` and resolves once it serves. */
export async function startWebCli(profile: string, args: string[] = []): Promise<WebCli> {
  const child = spawn(process.execPath, [bin, "web", "--profile", profile, "--json", ...args], {
    env: childEnv,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const output: string[] = [];
  createInterface({ input: child.stderr }).on("line", (line) => output.push(`stderr: ${line}`));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const ready = await new Promise<{ url: string; port: number }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`zimchat-chat web printed no webReady in 30 s:\n${output.join("\n")}`)),
      30_000,
    );
    createInterface({ input: child.stdout }).on("line", (line) => {
      output.push(line);
      try {
        const parsed = JSON.parse(line) as { type?: string; url?: string; port?: number };
        if (parsed.type === "webReady" && parsed.url && parsed.port) {
          clearTimeout(timer);
          resolve({ url: parsed.url, port: parsed.port });
        }
      } catch {
        // not a JSON line: kept in output
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`zimchat-chat web exited (${code}) before it served:\n${output.join("\n")}`));
    });
  });
  return {
    child,
    ...ready,
    output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.kill("SIGTERM");
      const code = await exited;
      clearTimeout(kill);
      return code;
    },
  };
}
