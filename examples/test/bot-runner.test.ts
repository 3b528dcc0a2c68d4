/**
 * `npm run example -- <bot>`: the example runner as a real process, as an
 * operator runs it: a second process on the same bot directory is refused,
 * a displaced bot exits non-zero saying why, and SIGTERM or SIGINT stop the
 * bot cleanly with exit code 0.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SqliteDeviceStore, ZimClient } from "@zimchat/client";
import { lockFileName, storeFileName } from "@zimchat/plugin-sdk/bot";
import { testHomeserver, type TestHomeserver } from "@zimchat/testing";

const main = fileURLToPath(new URL("../src/main.js", import.meta.url));

interface Runner {
  child: ChildProcessWithoutNullStreams;
  /** Resolves once stdout or stderr contains `text`; rejects if the process ends first. */
  seen(text: string): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>;
}

function runner(args: string[]): Runner {
  const child = spawn(process.execPath, [main, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let waiters: { text: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  const take = (d: Buffer): void => {
    out += d.toString();
    for (const w of waiters.filter((w) => out.includes(w.text))) w.resolve();
    waiters = waiters.filter((w) => !out.includes(w.text));
  };
  child.stdout.on("data", take);
  child.stderr.on("data", take);
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>((resolve) =>
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      for (const w of waiters)
        w.reject(new Error(`exited (${code ?? signal}) before printing ${JSON.stringify(w.text)}:\n${out}`));
      resolve({ code, signal, out });
    }),
  );
  const seen = (text: string): Promise<void> =>
    out.includes(text) ? Promise.resolve() : new Promise((resolve, reject) => waiters.push({ text, resolve, reject }));
  return { child, seen, exited };
}

describe("the example bot runner", () => {
  let hs: TestHomeserver;
  let dir: string;
  before(async () => {
    hs = await testHomeserver({ registration: "invite" });
    dir = hs.tempDir("runner-bot");
  });
  after(async () => hs?.close());

  it("refuses a second process on the same bot directory, naming the first", async () => {
    const first = runner(["echo-bot", "--dir", dir, "--server", hs.url, "--invite", await hs.invite()]);
    await first.seen("is running on");
    const second = await runner(["echo-bot", "--dir", dir]).exited;
    assert.equal(second.code, 1, second.out);
    assert.ok(
      second.out.includes(`${dir} is in use by another running bot (process ${first.child.pid}, since `),
      second.out,
    );
    assert.ok(second.out.includes(`if it is not running any more, delete ${join(dir, lockFileName)}.`), second.out);

    // Still running, and stopped cleanly by SIGTERM.
    first.child.kill("SIGTERM");
    const exit = await first.exited;
    assert.deepEqual([exit.code, exit.signal], [0, null], exit.out);
    assert.match(exit.out, /SIGTERM: stopping @echobot/);
    assert.match(exit.out, /Bot @echobot stopped\./);
    assert.equal(existsSync(join(dir, lockFileName)), false, "the lock is released");
  });

  it("exits 1 with the reason when another connection of its device displaces it", async () => {
    const bot = runner(["echo-bot", "--dir", dir]);
    await bot.seen("is running on");
    // A copy of the directory's device connecting elsewhere.
    const copy = new ZimClient({ store: new SqliteDeviceStore(join(dir, storeFileName)) });
    await copy.connect();
    const exit = await bot.exited;
    await copy.close();
    assert.equal(exit.code, 1, exit.out);
    assert.match(
      exit.out,
      /The homeserver closed the connection of @echobot: another connection of this device took over/,
    );
    assert.match(
      exit.out,
      /Stopped: another process connected as this bot's device \(the same --dir, or a copy of it, runs elsewhere\)\. Run each bot directory in one process only\./,
    );
  });

  it("Ctrl-C (SIGINT) stops it cleanly with exit code 0", async () => {
    const bot = runner(["echo-bot", "--dir", dir]);
    await bot.seen("is running on");
    bot.child.kill("SIGINT");
    const exit = await bot.exited;
    assert.deepEqual([exit.code, exit.signal], [0, null], exit.out);
    assert.match(exit.out, /Bot @echobot stopped\./);
  });
});
