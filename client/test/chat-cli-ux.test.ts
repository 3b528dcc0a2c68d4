/**
 * What a newcomer meets first in `zimchat-chat`: where profiles go, what a
 * refused or unreachable server looks like, what is left behind when
 * registering fails, lines typed while the homeserver is down, output
 * written to pipes, and the shape of the conversation. The real binary as
 * child processes against a real homeserver child process.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startHomeserver, type Homeserver } from "@zimchat/testing/spawn";
import { cli, failed, lines, ok, start, type Exit, type Line } from "./support/chat-cli.js";

/** Runs `zimchat-chat args` with extra environment variables (and without the ones named in `unset`). */
const cliWith = (env: Record<string, string>, args: string[], input?: string, unset: string[] = []): Promise<Exit> =>
  cli(args, input, { env, unset });

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const withoutReceipts = (all: Line[]): Line[] => all.filter((l) => l.type !== "receipt");

describe("zimchat-chat for a newcomer", () => {
  let server: Homeserver;
  const dir = mkdtempSync(join(tmpdir(), "zimchat-chat-ux-"));
  const profile = (name: string): string => join(dir, name);
  const as = (name: string, ...args: string[]): string[] => [...args, "--profile", profile(name)];

  before(async () => {
    // A fixed port, so the homeserver comes back on the same URL after a restart.
    server = await startHomeserver(["--port", String(await freePort())]);
    ok(await cli(as("alice", "register", "--server", server.url, "--username", "alice", "--json")));
    ok(await cli(as("bob", "register", "--server", server.url, "--username", "bob", "--json")));
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps profiles named on the command line in the user's data directory (XDG), and a path where it says", async () => {
    const dataHome = join(dir, "xdg-data");
    const env = { XDG_DATA_HOME: dataHome };
    const help = await cliWith(env, ["register", "--help"]);
    const flat = help.stdout.replace(/\s+/g, " ");
    assert.ok(
      flat.includes(
        `--profile <dir> the profile directory holding this device (device.db) as a path (any value with a /, like ./alice), or a profile name, kept in ${dataHome}/zimchat/profiles/<name> (default: default, env: ZIMCHAT_PROFILE)`,
      ),
      flat,
    );

    // No --profile: the profile "default" under $XDG_DATA_HOME, not the working directory.
    const [registered] = ok(await cliWith(env, ["register", "--server", server.url, "--username", "carol", "--json"]));
    const carolDir = join(dataHome, "zimchat", "profiles", "default");
    assert.equal(registered?.profile, carolDir);
    assert.ok(existsSync(join(carolDir, "device.db")));
    assert.equal(
      readFileSync(join(carolDir, ".gitignore"), "utf8").split("\n").includes("*"),
      true,
      "git ignores the profile's keys and contacts",
    );
    assert.equal((ok(await cliWith(env, ["whoami", "--json"]))[0] as Line).username, "carol");

    // A name (as the option or ZIMCHAT_PROFILE) is a profile under the same directory.
    ok(await cliWith(env, ["register", "--server", server.url, "--username", "dave", "--profile", "dave", "--json"]));
    assert.equal(
      (ok(await cliWith({ ...env, ZIMCHAT_PROFILE: "dave" }, ["whoami", "--json"]))[0] as Line).profile,
      join(dataHome, "zimchat", "profiles", "dave"),
    );

    // Without XDG_DATA_HOME: ~/.local/share.
    const home = join(dir, "home");
    mkdirSync(home);
    const [other] = lines(
      await cliWith({ HOME: home }, ["whoami", "--profile", "erin", "--json"], undefined, ["XDG_DATA_HOME"]),
    );
    assert.equal(other?.code, "not_registered");
    assert.match(
      String(other?.message),
      new RegExp(
        `^no device in ${join(home, ".local", "share", "zimchat", "profiles", "erin").replace(/[.]/g, "\\.")}: `,
      ),
    );

    const bad = await cliWith(env, ["whoami", "--profile", "no good", "--json"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /"no good" is neither a profile name .* nor a path \(a path has a \/, like \.\/no good\)/);
  });

  it("refuses a --server with a path instead of silently dropping it", async () => {
    const withPath = await cli(
      as("pathed", "register", "--server", `${server.url}/zimchat`, "--username", "frank", "--json"),
    );
    const error = failed(withPath);
    assert.equal(error.code, "invalid_argument");
    assert.equal(
      error.message,
      `--server "${server.url}/zimchat" has a path (/zimchat): a ZimChat homeserver is served at the root of its host, so give only the scheme, host and port, like ${server.url}. ` +
        "(Behind a reverse proxy, give the homeserver its own host name or port rather than a path.)",
    );
    assert.equal(existsSync(profile("pathed")), false);
    assert.equal(
      failed(await cli(as("linking", "link", "--server", `${server.url}/x?y=1`, "--json"))).code,
      "invalid_argument",
    );
  });

  it("leaves no empty profile directory behind a failed registration, and keeps one that existed", async () => {
    const taken = await cli(as("taken", "register", "--server", server.url, "--username", "alice", "--json"));
    assert.equal(failed(taken).message, `that username is taken on ${server.url}`);
    assert.equal(existsSync(profile("taken")), false, "the directory the attempt made is gone");

    mkdirSync(profile("mine"));
    failed(await cli(as("mine", "register", "--server", server.url, "--username", "alice", "--json")));
    assert.deepEqual(readdirSync(profile("mine")), [], "a directory that was there stays, without the attempt's files");

    const closed = `http://127.0.0.1:${await closedPort()}`;
    failed(await cli(as("unreachable", "register", "--server", closed, "--username", "gina", "--json")));
    assert.equal(existsSync(profile("unreachable")), false);
  });

  it("says why a homeserver cannot be reached, and what to try", async () => {
    const port = await closedPort();
    const refused = failed(
      await cli(as("u1", "register", "--server", `http://127.0.0.1:${port}`, "--username", "gina", "--json")),
    );
    assert.deepEqual(refused, {
      type: "error",
      code: "unreachable",
      message: `cannot reach http://127.0.0.1:${port}: connection refused by 127.0.0.1:${port} (nothing listens there). Is the homeserver running, and are the host and port right?`,
    });

    // Port 1 is one of the ports fetch() refuses outright ("fetch failed" alone said nothing).
    const blocked = await cli(as("u2", "register", "--server", "http://127.0.0.1:1", "--username", "gina"));
    assert.deepEqual([blocked.code, blocked.stdout], [1, ""]);
    assert.equal(
      blocked.stderr,
      "zimchat-chat: cannot reach http://127.0.0.1:1: Node's fetch refuses to connect to port 1 (a port reserved for another protocol, blocked as browsers block it). Run the homeserver on another port, like 8080.\n",
    );

    const dns = failed(
      await cli(as("u3", "register", "--server", "https://no-such-host.invalid", "--username", "gina", "--json")),
    );
    assert.equal(dns.code, "unreachable");
    assert.match(
      String(dns.message),
      /^cannot reach https:\/\/no-such-host\.invalid: the DNS lookup of no-such-host\.invalid failed \((ENOTFOUND|EAI_AGAIN)\)\. Check the host name in --server/,
    );

    // https:// to a plain-HTTP port: a TLS failure, explained.
    const tls = failed(
      await cli(
        as("u4", "register", "--server", server.url.replace("http:", "https:"), "--username", "gina", "--json"),
      ),
    );
    assert.equal(tls.code, "unreachable");
    assert.equal(
      tls.message,
      `cannot reach ${server.url.replace("http:", "https:")}: the TLS handshake failed: ${server.url.slice("http://".length)} does not seem to speak https (it answered in plain text). ` +
        "Try http://, or the port where the homeserver (or its proxy) serves TLS.",
    );
  });

  it("verify says how many digits it got when a safety number is not 60 digits", async () => {
    const [number] = ok(await cli(as("alice", "safety-number", "bob", "--json")));
    const short = String(number?.digits).slice(0, 59);
    const error = failed(await cli(as("alice", "verify", "bob", short, "--json")));
    assert.deepEqual(error, {
      type: "error",
      code: "invalid_argument",
      message:
        "expected 60 digits, got 59: a safety number is twelve groups of five digits (zimchat-chat safety-number bob shows yours)",
    });
    // Twelve groups typed with one missing: the count says so.
    const grouped = String(number?.grouped).split(" ").slice(0, 11);
    assert.match(
      failed(await cli(as("alice", "verify", "bob", ...grouped, "--json"))).message as string,
      /^expected 60 digits, got 55: /,
    );
  });

  it("writes no ANSI escape codes to a pipe (QR codes are plain blocks), unless FORCE_COLOR asks; NO_COLOR wins over a terminal", async () => {
    const piped = await cli(as("alice", "safety-number", "bob"));
    assert.equal(piped.code, 0, piped.stderr);
    assert.ok(!piped.stdout.includes("\x1b"), "no escape codes in a pipe");
    const qr = piped.stdout.split("\n").slice(2, -3);
    assert.ok(
      qr.length >= 10 && qr.every((l) => /^[█▀▄ ]+$/.test(l)),
      `a QR code in plain block characters:\n${qr.join("\n")}`,
    );

    const forced = await cliWith({ FORCE_COLOR: "1" }, as("alice", "safety-number", "bob"));
    assert.ok(forced.stdout.includes("\x1b["), "FORCE_COLOR draws the coloured code");
    const noColour = await cliWith({ NO_COLOR: "1" }, as("alice", "safety-number", "bob"));
    assert.ok(!noColour.stdout.includes("\x1b"));

    const linking = start(as("alice-new", "link", "--server", server.url));
    const shown = await linking.seen("Waiting for the approval");
    linking.child.kill("SIGINT");
    await linking.exited;
    assert.ok(!shown.includes("\x1b"), "the link QR code too");
    assert.match(shown, /zimchat-chat approve-link 'zimchat-link:\?/, "with the link printed as text");
    assert.equal(existsSync(profile("alice-new")), false, "a cancelled link leaves no profile directory");
  });

  it("shows the stored conversation in the same shape as live lines", async () => {
    const sent = await cli(as("alice", "send", "bob", "Braai at six"));
    assert.equal(sent.code, 0, sent.stderr);
    const live = /^(\[\d\d:\d\d\] you → bob: Braai at six)$/m.exec(sent.stdout)?.[1];
    assert.ok(live, sent.stdout);
    const chat = await cli(as("alice", "chat", "bob", "--history", "1"), "/quit\n");
    assert.equal(chat.code, 0, chat.stderr);
    assert.equal(chat.stdout.split("\n")[0], live, "history: you → bob, as when it was sent");
  });

  it("chat: a line typed while the homeserver is down is queued, said so, and sent when it is back", async () => {
    const chat = start(as("alice", "chat", "bob", "--json", "--history", "1"));
    await chat.seen('"type":"chatReady"');
    await server.restart(async () => {
      chat.child.stdin.write("Are you there?\n");
      await chat.seen('"type":"queued"');
    });
    await chat.seen('"queued":true');
    chat.child.stdin.write("/quit\n");
    const exit = await chat.exited;
    assert.equal(exit.code, 0, exit.stderr);
    const out = withoutReceipts(lines(exit.stdout));
    const queued = out.find((l) => l.type === "queued");
    assert.equal(queued?.text, "Are you there?");
    assert.equal(queued?.pending, 1);
    assert.match(String(queued?.reason), new RegExp(`^cannot reach ${server.url}: connection refused`));
    const sent = out.filter((l) => l.type === "sent");
    assert.deepEqual(
      sent.map((l) => [l.text, l.queued]),
      [["Are you there?", true]],
    );
    assert.deepEqual(
      out.filter((l) => l.type === "error"),
      [],
      "no line was lost with an error",
    );
    const outbox = JSON.parse(readFileSync(join(profile("alice"), "outbox.json"), "utf8")) as Record<string, string[]>;
    assert.deepEqual(outbox, {}, "nothing is left queued once sent");

    const inbox = withoutReceipts(ok(await cli(as("bob", "receive", "--json"))));
    assert.ok(
      inbox.some((l) => l.type === "message" && l.text === "Are you there?"),
      JSON.stringify(inbox),
    );
  });

  it("chat: lines still queued when the chat ends stay in the profile and go out with the next chat", async () => {
    const chat = start(as("alice", "chat", "bob", "--history", "1"));
    await chat.seen("Chatting with bob.");
    let exit: Exit | undefined;
    await server.restart(async () => {
      chat.child.stdin.end("First queued\nSecond queued\n");
      exit = await chat.exited;
    });
    assert.equal(exit?.code, 0, exit?.stderr);
    assert.ok(exit?.stderr.includes("Not sent yet: cannot reach"), exit?.stderr);
    assert.ok(
      exit?.stderr.includes(
        "queued, will send when the server is reachable (2 messages waiting for bob): Second queued",
      ),
      exit?.stderr,
    );
    assert.ok(
      exit?.stderr.includes(
        `2 messages to bob not sent: the homeserver was unreachable. They are kept in ${profile("alice")} and sent the next time you run zimchat-chat chat bob.`,
      ),
      exit?.stderr,
    );
    const outbox = JSON.parse(readFileSync(join(profile("alice"), "outbox.json"), "utf8")) as Record<string, string[]>;
    assert.deepEqual(Object.values(outbox), [["First queued", "Second queued"]]);

    const next = withoutReceipts(ok(await cli(as("alice", "chat", "bob", "--json", "--history", "1"), "/quit\n")));
    assert.deepEqual(
      next.filter((l) => l.type === "sent").map((l) => [l.text, l.queued]),
      [
        ["First queued", true],
        ["Second queued", true],
      ],
    );
    const inbox = withoutReceipts(ok(await cli(as("bob", "receive", "--json"))));
    assert.deepEqual(
      inbox.filter((l) => l.type === "message").map((l) => l.text),
      ["First queued", "Second queued"],
    );
  });
});
