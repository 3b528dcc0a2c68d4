/**
 * The real `zimchat serve` as a child process, for tests that kill it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));

/** A running child homeserver. */
export interface ChildServer {
  child: ChildProcess;
  url: string;
  /** Every line it wrote to stdout and stderr. */
  logs: string[];
  /** Resolves with the exit code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `zimchat serve` on a free port and waits until it listens. */
export async function startChildServer(args: string[], env: Record<string, string> = {}): Promise<ChildServer> {
  const child = spawn(process.execPath, [bin, "serve", "--port", "0", "--host", "127.0.0.1", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  createInterface({ input: child.stderr! }).on("line", (line) => logs.push(line));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${logs.join("\n")}`)), 20_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(line);
      const match = /"port":(\d+).*"msg":"listening"/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    void exited.then(({ code }) => reject(new Error(`server exited with ${code}:\n${logs.join("\n")}`)));
  });
  return { child, url: `http://127.0.0.1:${port}`, logs, exited };
}

/** One JSON request to a child server: the status and the parsed body (undefined when empty). */
export async function callJson(url: string, method: string, path: string, body?: unknown, auth?: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
