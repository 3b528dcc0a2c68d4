#!/usr/bin/env node
// `npm run demo`: the offline-Bob story end to end, the way people would
// live it. A real homeserver (a child process on a free port, open
// registration, a throwaway SQLite database) and two people, each with
// their own device in their own temporary profile directory, driving the
// real `zimchat-chat` CLI as child processes. Every step is printed; any
// surprise ends the demo with exit code 1. Everything is cleaned up.
// Run `npm run build` first (`npm run demo` does).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const serverBin = join(root, "server/bin/zimchat.js");
const chatBin = join(root, "client/bin/zimchat-chat.js");
const work = mkdtempSync(join(tmpdir(), "zimchat-demo-"));
const started = Date.now();

const color = (code, text) => (process.stdout.isTTY ? `\x1b[${code}m${text}\x1b[0m` : text);
const step = (n, title) => console.log(`\n${color(1, `${n}. ${title}`)}`);
const note = (text) => console.log(`   ${text}`);
const check = (ok, what) => {
  if (!ok) throw new Error(what);
  console.log(`   ${color(32, "✔")} ${what}`);
};
const quote = (arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `"${arg.replace(/(["\\$`])/g, "\\$1")}"`);

/** Starts `zimchat serve` and resolves with its URL once it logs "listening". */
function startServer() {
  const dataDir = join(work, "homeserver");
  const args = [
    "serve",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    "--data-dir",
    dataDir,
    "--database-url",
    `file:${join(dataDir, "zimchat.db")}`,
    "--registration",
    "open",
    "--log-level",
    "warn",
  ];
  const child = spawn(process.execPath, [serverBin, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const logs = [];
  createInterface({ input: child.stderr }).on("line", (line) => logs.push(line));
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the homeserver did not start within 30 s:\n${logs.join("\n")}`)),
      30_000,
    );
    createInterface({ input: child.stdout }).on("line", (line) => {
      logs.push(line);
      const match = /"port":(\d+).*"msg":"listening"/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${match[1]}`);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the homeserver exited with ${code}:\n${logs.join("\n")}`));
    });
  });
  return { child, url };
}

// Each person's profile is passed explicitly; the CLI's variables of whoever runs the demo stay out.
const { ZIMCHAT_PROFILE, ZIMCHAT_SERVER, ZIMCHAT_INVITE, ...childEnv } = process.env;

/**
 * Runs `zimchat-chat` as `who` (their own profile), prints the command and what it printed, and fails on a non-zero
 * exit.
 */
function chat(who, args, { show = true } = {}) {
  const argv = [...args, "--profile", join(work, who)];
  if (show) console.log(`   ${color(36, `${who}$`)} zimchat-chat ${args.map(quote).join(" ")}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [chatBin, ...argv], { stdio: ["ignore", "pipe", "pipe"], env: childEnv });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (show) for (const line of stdout.trimEnd().split("\n")) if (line) console.log(`     ${line}`);
      if (code !== 0)
        reject(new Error(`${who}'s zimchat-chat ${args[0]} exited with ${code ?? signal}:\n${stderr}${stdout}`));
      else resolve(stdout);
    });
  });
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

let server;
try {
  step(1, "A homeserver starts (open registration, its own throwaway database)");
  server = startServer();
  const url = await server.url;
  note(`listening on ${url}`);

  step(2, "Alice and Bob each register a device; keys are made on the device and stay in its profile");
  const aliceUuid = /account ([0-9a-f-]{36})/.exec(
    await chat("alice", ["register", "--server", url, "--username", "alice"]),
  )?.[1];
  const bobUuid = /account ([0-9a-f-]{36})/.exec(
    await chat("bob", ["register", "--server", url, "--username", "bob"]),
  )?.[1];
  check(Boolean(aliceUuid && bobUuid), "both accounts exist");

  step(3, "Alice writes to Bob, who has never connected (his pre-keys on the server let her start a session)");
  const hello = "Hey, did you see the news about the bond notes?";
  await chat("alice", ["send", "bob", hello]);

  step(4, "Bob comes online: the homeserver hands him what waited, and only his device can decrypt it");
  const bobInbox = await chat("bob", ["receive"]);
  check(
    new RegExp(`^\\[\\d\\d:\\d\\d\\] alice: ${escape(hello)}$`, "m").test(bobInbox),
    "Bob decrypted Alice's message",
  );
  note(
    `(the server names a sender only by account id, ${aliceUuid}; the name "alice" came inside the encrypted ` +
      "message, and Bob's device checked with a look-up that it belongs to that account)",
  );

  step(5, "Bob replies");
  const reply = "Yes! Prices went up again.";
  await chat("bob", ["send", "alice", reply]);

  step(6, "Alice receives the reply");
  const aliceInbox = await chat("alice", ["receive"]);
  check(new RegExp(`^\\[\\d\\d:\\d\\d\\] bob: ${escape(reply)}$`, "m").test(aliceInbox), "Alice decrypted Bob's reply");

  step(7, "They compare safety numbers");
  await chat("alice", ["safety-number", "bob"]);
  const alices = JSON.parse(await chat("alice", ["safety-number", "bob", "--json"], { show: false }));
  const bobs = JSON.parse(await chat("bob", ["safety-number", "alice", "--json"], { show: false }));
  note(`Alice's screen: ${alices.grouped}`);
  note(`Bob's screen:   ${bobs.grouped}`);
  check(/^\d{60}$/.test(alices.digits) && alices.digits === bobs.digits, "Alice and Bob see the same safety number");

  step(8, "Alice scans Bob's code and marks him verified");
  await chat("alice", ["verify", "bob", bobs.scannable]);

  console.log(`\n${color(32, `The demo passed in ${((Date.now() - started) / 1000).toFixed(1)} s.`)}`);
} catch (error) {
  console.error(`\n${color(31, "The demo failed:")} ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
} finally {
  if (server && server.child.exitCode === null) {
    const exited = new Promise((resolve) => server.child.once("exit", resolve));
    server.child.kill("SIGTERM");
    await exited;
  }
  rmSync(work, { recursive: true, force: true });
}
