/**
 * The `zimchat-chat` terminal chat, driven as people and scripts drive it:
 * the real binary as child processes, each person with their own profile
 * directory, against a real homeserver child process. The tests run in
 * order and tell one story (later ones build on the accounts made earlier).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SqliteDeviceStore, ZimClient } from "../src/index.js";
import { startHomeserver, type Homeserver } from "@zimchat/testing/spawn";
import { childEnv, cli, lines, ok, start, type Exit, type Line } from "./support/chat-cli.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const clock = (timestamp: number): string => new Date(timestamp).toISOString().slice(11, 16);
// Delivery receipts are sent in the background as a receiving command ends, so whether one is already queued is timing.
const withoutReceipts = (all: Line[]): Line[] => all.filter((l) => l.type !== "receipt");
const withoutReceiptText = (text: string): string => text.replace(/^✓ delivered to .*\n/gm, "");

describe("zimchat-chat", () => {
  let server: Homeserver;
  const dir = mkdtempSync(join(tmpdir(), "zimchat-chat-test-"));
  const profile = (name: string): string => join(dir, name);
  const as = (name: string, ...args: string[]): string[] => [...args, "--profile", profile(name)];
  let aliceUuid = "";
  let bobUuid = "";

  before(async () => {
    server = await startHomeserver();
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("has help for every subcommand, with --json and --profile", async () => {
    const top = await cli(["--help"]);
    assert.equal(top.code, 0);
    for (const command of ["register", "send", "receive", "chat", "safety-number", "verify", "accept", "whoami"]) {
      assert.match(top.stdout, new RegExp(`^  ${command} `, "m"), `--help lists ${command}`);
      const help = await cli([command, "--help"]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`^Usage: zimchat-chat ${command} `));
      // commander wraps help at the terminal width: compare with whitespace collapsed.
      const flat = help.stdout.replace(/\s+/g, " ");
      assert.ok(flat.includes(" --json print one JSON object per line, for scripts "), flat);
      assert.ok(
        flat.includes(
          " --profile <dir> the profile directory holding this device (device.db) as a path (any value with a /, like ./alice), or a profile name, kept in ",
        ),
        flat,
      );
      assert.ok(flat.includes("/zimchat/profiles/<name> (default: default, env: ZIMCHAT_PROFILE) "), flat);
    }
  });

  it("registers each device in its own owner-only profile", async () => {
    const [alice] = ok(await cli(as("alice", "register", "--server", server.url, "--username", "alice", "--json")));
    aliceUuid = String(alice?.uuid);
    assert.match(aliceUuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.deepEqual(alice, {
      type: "registered",
      username: "alice",
      uuid: aliceUuid,
      deviceId: 1,
      server: server.url,
      profile: profile("alice"),
    });
    assert.equal(statSync(join(profile("alice"), "device.db")).mode & 0o777, 0o600, "the store is owner-only");
    assert.equal(statSync(profile("alice")).mode & 0o777, 0o700, "so is the profile directory");

    const bob = await cli(as("bob", "register", "--server", `${server.url}/`, "--username", "bob"));
    assert.equal(bob.code, 0, bob.stderr);
    bobUuid = /account ([0-9a-f-]{36})/.exec(bob.stdout)?.[1] ?? "";
    assert.equal(
      bob.stdout,
      `Registered bob on ${server.url} (account ${bobUuid}, device 1).\nProfile: ${profile("bob")}\n`,
    );
    assert.equal(bob.stderr, "");

    assert.deepEqual(ok(await cli(as("bob", "whoami", "--json"))), [
      { type: "whoami", username: "bob", uuid: bobUuid, deviceId: 1, server: server.url, profile: profile("bob") },
    ]);
  });

  it("refuses a second device in a profile, a taken or malformed username, and an unreachable server", async () => {
    const again = await cli(as("alice", "register", "--server", server.url, "--username", "alice2", "--json"));
    assert.equal(again.code, 1);
    assert.deepEqual(lines(again), [
      {
        type: "error",
        code: "already_registered",
        message: `${profile("alice")} already holds alice's device on ${server.url}: pass another --profile`,
      },
    ]);

    const taken = await cli(as("taken", "register", "--server", server.url, "--username", "alice"));
    assert.deepEqual(
      [taken.code, taken.stdout, taken.stderr],
      [1, "", `zimchat-chat: that username is taken on ${server.url}\n`],
    );
    assert.equal(
      existsSync(join(profile("taken"), "device.db")),
      false,
      "a refused registration leaves no device behind",
    );

    const malformed = await cli(as("malformed", "register", "--server", server.url, "--username", "Bob!"));
    assert.deepEqual(
      [malformed.code, malformed.stderr],
      [1, `zimchat-chat: --username "Bob!" is not a username (3 to 32 of a-z, 0-9, _ and .)\n`],
    );

    const closed = `http://127.0.0.1:${await closedPort()}`;
    const unreachable = await cli(as("unreachable", "register", "--server", closed, "--username", "carol", "--json"));
    assert.equal(unreachable.code, 1);
    assert.deepEqual(lines(unreachable), [
      {
        type: "error",
        code: "unreachable",
        message: `cannot reach ${closed}: connection refused by ${closed.slice("http://".length)} (nothing listens there). Is the homeserver running, and are the host and port right?`,
      },
    ]);
    assert.equal(existsSync(join(profile("unreachable"), "device.db")), false);

    const self = await cli(as("alice", "send", "alice", "Note to self"));
    assert.deepEqual(
      [self.code, self.stdout, self.stderr],
      [1, "", "zimchat-chat: alice is this device's own account: name someone else\n"],
    );

    const nobody = await cli(as("nobody", "receive"));
    assert.deepEqual(
      [nobody.code, nobody.stderr],
      [
        1,
        `zimchat-chat: no device in ${profile("nobody")}: run zimchat-chat register --server <url> --username <name> first, or pass --profile <dir>\n`,
      ],
    );
  });

  it("Alice writes while Bob has never connected; Bob receives, decrypts and replies", async () => {
    const hello = "Hey, did you see the news about the bond notes?";
    const [sent] = ok(await cli(as("alice", "send", "bob", hello, "--json")));
    const at = Number(sent?.timestamp);
    assert.deepEqual(sent, { type: "sent", to: "bob", toUuid: bobUuid, text: hello, timestamp: at, devices: 1 });

    // Bob has never looked Alice up and the envelope names her by account id only: the username her encrypted
    // message claims names her, once Bob's device has checked it with a look-up.
    const inbox = await cli(as("bob", "receive"));
    assert.deepEqual([inbox.code, inbox.stdout, inbox.stderr], [0, `[${clock(at)}] alice: ${hello}\n`, ""]);
    const empty = await cli(as("bob", "receive"));
    assert.deepEqual([empty.code, empty.stdout, empty.stderr], [0, "No new messages.\n", ""]);
    assert.deepEqual(ok(await cli(as("bob", "receive", "--json"))), [{ type: "queueEmpty", received: 0 }]);

    const reply = "Yes! Prices went up again.";
    const replied = await cli(as("bob", "send", "alice", ...reply.split(" ")));
    assert.equal(replied.code, 0, replied.stderr);
    assert.match(
      replied.stdout,
      new RegExp(`^\\[\\d\\d:\\d\\d\\] you → alice: ${reply.replace(/[.!]/g, "\\$&")}\\n$`),
      "words are joined into one message",
    );

    const received = ok(await cli(as("alice", "receive", "--json")));
    const message = received.find((l) => l.type === "message");
    assert.deepEqual(withoutReceipts(received), [
      {
        type: "message",
        from: "bob",
        fromUuid: bobUuid,
        fromDevice: 1,
        text: reply,
        timestamp: message?.timestamp,
        envelopeId: message?.envelopeId,
      },
      { type: "queueEmpty", received: 1 },
    ]);
    // Bob's delivery receipt is sent in the background as his receive ends; when it made it, it names Alice's message.
    for (const receipt of received.filter((l) => l.type === "receipt"))
      assert.deepEqual(receipt, { type: "receipt", from: "bob", fromUuid: bobUuid, timestamps: [at] });

    // Now that Bob has written to alice by name, he sees her name.
    const [history] = ok(await cli(as("bob", "chat", "alice", "--json", "--history", "1"), "/quit\n"));
    assert.deepEqual(history, {
      type: "history",
      direction: "out",
      user: "alice",
      text: reply,
      timestamp: history?.timestamp,
    });
  });

  it("shows the same safety number on both sides, as digits and a QR code", async () => {
    const [alices] = ok(await cli(as("alice", "safety-number", "bob", "--json")));
    const [bobs] = ok(await cli(as("bob", "safety-number", "alice", "--json")));
    const digits = String(alices?.digits);
    assert.match(digits, /^\d{60}$/);
    const grouped = digits.match(/.{5}/g)!.join(" ");
    assert.deepEqual(alices, {
      type: "safetyNumber",
      user: "bob",
      digits,
      grouped,
      scannable: alices?.scannable,
      verified: false,
    });
    assert.deepEqual(bobs, {
      type: "safetyNumber",
      user: "alice",
      digits,
      grouped,
      scannable: bobs?.scannable,
      verified: false,
    });
    assert.notEqual(alices?.scannable, bobs?.scannable, "each side's code says who shows it");

    const shown = await cli(as("alice", "safety-number", "bob"));
    assert.equal(shown.code, 0, shown.stderr);
    const text = shown.stdout.split("\n");
    assert.equal(text[0], "Safety number with bob (not verified):");
    assert.equal(text[1], `  ${grouped}`);
    const qr = text.slice(2, -3);
    assert.ok(
      qr.length >= 10 && qr.every((l) => /[█▀▄]|\x1b\[/.test(l)),
      `a QR code drawn with block characters:\n${qr.join("\n")}`,
    );
    assert.deepEqual(text.slice(-3), [
      "Compare the digits with bob's screen, or let bob scan the code; then run zimchat-chat verify bob <their number or payload>.",
      `Payload for bob to scan: ${String(alices?.scannable)}`,
      "",
    ]);
  });

  it("verifies by the number or a scanned payload, and refuses what does not match", async () => {
    const [alices] = ok(await cli(as("alice", "safety-number", "bob", "--json")));
    const [bobs] = ok(await cli(as("bob", "safety-number", "alice", "--json")));
    const mismatch = {
      type: "error",
      code: "safety_number_mismatch",
      message: "that does not match your safety number with bob: bob is not verified",
    };

    const wrong = await cli(as("alice", "verify", "bob", "0".repeat(60), "--json"));
    assert.equal(wrong.code, 1);
    assert.deepEqual(lines(wrong), [mismatch]);
    // Alice's own code is not Bob's: libsignal checks which side a scan came from.
    const own = await cli(as("alice", "verify", "bob", String(alices?.scannable), "--json"));
    assert.equal(own.code, 1);
    assert.deepEqual(lines(own), [mismatch]);
    assert.equal((ok(await cli(as("alice", "safety-number", "bob", "--json")))[0] as Line).verified, false);

    assert.deepEqual(ok(await cli(as("alice", "verify", "bob", String(bobs?.scannable), "--json"))), [
      { type: "verified", user: "bob" },
    ]);
    assert.equal((ok(await cli(as("alice", "safety-number", "bob", "--json")))[0] as Line).verified, true);

    // Read aloud: twelve groups of five, typed as separate words.
    const spoken = await cli(as("bob", "verify", "alice", ...String(alices?.grouped).split(" ")));
    assert.deepEqual(
      [spoken.code, spoken.stdout, spoken.stderr],
      [0, "alice is verified: the safety numbers match.\n", ""],
    );
  });

  it("tells Alice when Bob's safety number changes, and blocks sending until she accepts", async () => {
    // Bob reinstalls, keeping his credentials: a new identity key on the same account.
    const alicesView = new SqliteDeviceStore(join(profile("alice"), "device.db"));
    assert.ok(alicesView.getIdentity(bobUuid)?.verified, "Alice had verified Bob");
    alicesView.close();
    const bobDevice = new ZimClient({ store: new SqliteDeviceStore(join(profile("bob"), "device.db")) });
    await bobDevice.resetIdentity();
    await bobDevice.close();

    const [ready] = withoutReceipts(ok(await cli(as("bob", "send", "alice", "I got a new phone", "--json"))));
    assert.equal(ready?.type, "sent");
    const at = Number(ready?.timestamp);
    const told = await cli(as("alice", "receive"));
    assert.equal(told.code, 0, told.stderr);
    assert.equal(
      withoutReceiptText(told.stdout),
      "bob's safety number has changed. Sending to bob is blocked until you verify again " +
        "(zimchat-chat safety-number bob, then zimchat-chat verify bob <number>) or run zimchat-chat accept bob.\n" +
        `[${clock(at)}] bob: I got a new phone\n`,
    );

    const blocked = await cli(as("alice", "send", "bob", "Is that really you?"));
    assert.deepEqual(
      [blocked.code, blocked.stdout, blocked.stderr],
      [
        1,
        "",
        "zimchat-chat: bob's safety number has changed since you verified it, so sending is blocked. " +
          "Compare safety numbers again (zimchat-chat safety-number bob) and run zimchat-chat verify bob <number>, or run zimchat-chat accept bob.\n",
      ],
    );
    const blockedJson = await cli(as("alice", "send", "bob", "Is that really you?", "--json"));
    assert.equal(blockedJson.code, 1);
    assert.equal(lines(blockedJson)[0]?.code, "untrusted_identity");

    // In a chat, a refused line is explained and the chat goes on.
    const chatting = ok(
      await cli(as("alice", "chat", "bob", "--json", "--history", "1"), "Is that really you?\n/quit\n"),
    );
    assert.deepEqual(withoutReceipts(chatting).slice(1), [
      { type: "chatReady", user: "bob" },
      { type: "error", code: "untrusted_identity", message: lines(blockedJson)[0]?.message },
    ]);

    assert.deepEqual(ok(await cli(as("alice", "accept", "bob", "--json"))), [
      { type: "accepted", user: "bob", wasBlocked: true },
    ]);
    const [number] = ok(await cli(as("alice", "safety-number", "bob", "--json")));
    assert.equal(number?.verified, false, "accepting is not verifying");
    assert.deepEqual(
      withoutReceipts(ok(await cli(as("alice", "send", "bob", "Welcome back", "--json")))).map((l) => l.type),
      ["sent"],
    );
    const inbox = withoutReceipts(ok(await cli(as("bob", "receive", "--json"))));
    assert.deepEqual(
      inbox.map((l) => [l.type, l.from, l.text]),
      [
        ["message", "alice", "Welcome back"],
        ["queueEmpty", undefined, undefined],
      ],
    );

    const stranger = await cli(as("alice", "accept", "nobody_here", "--json"));
    assert.equal(stranger.code, 1);
    assert.deepEqual(lines(stranger), [
      { type: "error", code: "unknown_user", message: `there is no user nobody_here on ${server.url}` },
    ]);
  });

  it("chat: shows the conversation, sends typed lines, answers /safety, leaves on /quit", async () => {
    const chat = start(as("alice", "chat", "bob", "--json", "--history", "3"));
    await chat.seen('"type":"chatReady"');
    // stdin stays open: /quit alone must end the chat.
    chat.child.stdin.write("Are you coming to the braai?\n/safety\n/quit\n");
    const exit = await chat.exited;
    chat.child.stdin.destroy();
    assert.equal(exit.code, 0, exit.stderr);

    const out = withoutReceipts(lines(exit));
    assert.deepEqual(
      out.map((l) => [l.type, l.direction ?? l.to ?? l.user, l.text]),
      [
        ["history", "in", "Yes! Prices went up again."],
        ["history", "in", "I got a new phone"],
        ["history", "out", "Welcome back"],
        ["chatReady", "bob", undefined],
        ["sent", "bob", "Are you coming to the braai?"],
        ["safetyNumber", "bob", undefined],
      ],
    );
    const [, , , , sent, number] = out;
    assert.deepEqual(sent, {
      type: "sent",
      to: "bob",
      toUuid: bobUuid,
      text: "Are you coming to the braai?",
      timestamp: sent?.timestamp,
      devices: 1,
    });
    assert.match(String(number?.grouped), /^(\d{5} ){11}\d{5}$/);
    assert.equal(number?.qr, undefined, "no QR code in JSON");
  });

  it("chat: messages arrive live while the chat is open", async () => {
    const chat = start(as("bob", "chat", "alice", "--history", "1"));
    await chat.seen("Chatting with alice.");
    const sent = ok(await cli(as("alice", "send", "bob", "Bring the boerewors", "--json")));
    await chat.seen("Bring the boerewors");
    chat.child.stdin.end("See you at six\n");
    const exit = await chat.exited;
    assert.equal(exit.code, 0, exit.stderr);

    // Alice's send also shows what reached her meanwhile: Bob's receipt for the message his chat just decrypted
    // (sent in the background, so maybe not yet).
    const [sentLine] = withoutReceipts(sent);
    assert.equal(sentLine?.type, "sent");
    const at = Number(sentLine?.timestamp);
    const text = withoutReceiptText(exit.stdout).split("\n");
    assert.match(text[0] ?? "", /^\[\d\d:\d\d\] alice: Welcome back$/, "the stored history: the last message");
    assert.match(
      text[1] ?? "",
      /^\[\d\d:\d\d\] alice: Are you coming to the braai\?$/,
      "then what waited on the server",
    );
    assert.equal(
      text[2],
      "Chatting with alice. Type a message and press Enter; /file <path> sends a file, /safety shows the safety number, /quit leaves, //text sends /text (a bot command).",
    );
    assert.equal(text[3], `[${clock(at)}] alice: Bring the boerewors`);
    assert.match(
      text[4] ?? "",
      /^\[\d\d:\d\d\] you → alice: See you at six$/,
      "the end of input still sends what was typed",
    );
    assert.deepEqual(text.slice(5), [""]);
    assert.deepEqual(
      withoutReceipts(ok(await cli(as("alice", "receive", "--json")))).map((l) => l.text),
      ["See you at six", undefined],
    );
  });

  it("receive --wait: shows live messages until the time is up or Ctrl-C", async () => {
    const receiving = start(as("bob", "receive", "--wait", "30", "--json"));
    await receiving.seen('"type":"queueEmpty"');
    await cli(as("alice", "send", "bob", "Are you still there?"));
    await receiving.seen("Are you still there?");
    receiving.child.kill("SIGINT");
    const exit = await receiving.exited;
    assert.equal(exit.code, 0, exit.stderr);
    const out = withoutReceipts(lines(exit));
    assert.deepEqual(
      out.map((l) => [l.type, l.from, l.text]),
      [
        ["queueEmpty", undefined, undefined],
        ["message", "alice", "Are you still there?"],
      ],
    );
  });

  it("chat: an unknown /command is refused locally, //command is sent as /command (for bots)", async () => {
    const chat = start(as("alice", "chat", "bob", "--json", "--history", "1"));
    await chat.seen('"type":"chatReady"');
    chat.child.stdin.write("/remind 10m tea\n//remind 10m tea\n/quit\n");
    const exit = await chat.exited;
    chat.child.stdin.destroy();
    assert.equal(exit.code, 0, exit.stderr);
    const out = withoutReceipts(lines(exit)).filter((l) => l.type !== "chatReady" && l.type !== "history");
    assert.deepEqual(
      out.map((l) => [l.type, l.text]),
      [
        ["warning", undefined],
        ["sent", "/remind 10m tea"],
      ],
    );
    assert.match(String(out[0]?.message), /^unknown command \/remind 10m tea: .*\/\/text sends \/text/);
    assert.deepEqual(
      withoutReceipts(ok(await cli(as("bob", "receive", "--json")))).map((l) => [l.type, l.text]),
      [
        ["message", "/remind 10m tea"],
        ["queueEmpty", undefined],
      ],
    );
  });

  it("npm run demo: the whole story against its own homeserver, exit 0", async () => {
    const demo = await new Promise<Exit>((resolve, reject) => {
      const child = spawn(process.execPath, [join(root, "scripts/demo.mjs")], {
        env: childEnv,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      child.once("error", reject);
      child.once("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
    assert.equal(demo.code, 0, `${demo.stderr}\n${demo.stdout}`);
    assert.equal(demo.stderr, "");
    for (const check of [
      "✔ Bob decrypted Alice's message",
      "✔ Alice decrypted Bob's reply",
      "✔ Alice and Bob see the same safety number",
      "bob is verified: the safety numbers match.",
    ]) {
      assert.ok(demo.stdout.includes(check), `the demo says "${check}"`);
    }
    assert.match(demo.stdout, /The demo passed in \d+\.\d s\.\n$/);
  });
});

describe("zimchat-chat register on an invite-only homeserver", () => {
  let server: Homeserver;
  const dir = mkdtempSync(join(tmpdir(), "zimchat-chat-invite-"));
  before(async () => {
    server = await startHomeserver(["--registration", "invite"]);
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("asks for an invite, refuses a wrong one, registers with a good one", async () => {
    const created = await new Promise<Exit>((resolve, reject) => {
      const args = [
        join(root, "server/bin/zimchat.js"),
        "invite",
        "create",
        "--data-dir",
        server.dataDir,
        "--database-url",
        server.databaseUrl,
        "--json",
      ];
      const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("error", reject);
      child.once("close", (code) => resolve({ code, stdout, stderr }));
    });
    assert.equal(created.code, 0, created.stderr);
    const { token } = JSON.parse(created.stdout) as { token: string };
    const register = (...extra: string[]): Promise<Exit> =>
      cli(["register", "--server", server.url, "--username", "dudu", "--profile", join(dir, "dudu"), ...extra]);

    const without = await register();
    assert.deepEqual(
      [without.code, without.stderr],
      [1, `zimchat-chat: ${server.url} only registers people with an invite: pass --invite <token>\n`],
    );
    const wrong = await register("--invite", "not-a-real-token");
    assert.deepEqual(
      [wrong.code, wrong.stderr],
      [1, `zimchat-chat: ${server.url} refused the invite token (wrong, used up or expired)\n`],
    );
    assert.equal(existsSync(join(dir, "dudu", "device.db")), false);

    const [registered] = ok(await register("--invite", token, "--json"));
    assert.equal(registered?.type, "registered");
    assert.equal(registered?.username, "dudu");
  });
});
