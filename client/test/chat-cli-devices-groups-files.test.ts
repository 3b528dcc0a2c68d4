/**
 * The terminal chat's multi-device, group and attachment commands,
 * driven as people and scripts drive them: the real `zimchat-chat` binary
 * as child processes, one profile directory per device, against a real
 * homeserver child process. The tests run in order and tell one story.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { safeFileName } from "../src/cli/commands/download.js";
import { cli, failed, lines, ok, only, start, type Line } from "./support/chat-cli.js";
import { startHomeserver, type Homeserver } from "@zimchat/testing/spawn";

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const today = (): string => new Date().toISOString().slice(0, 10);

describe("zimchat-chat: linked devices, groups, files", () => {
  let server: Homeserver;
  const dir = mkdtempSync(join(tmpdir(), "zimchat-chat-devices-"));
  const profile = (name: string): string => join(dir, name);
  const as = (name: string, ...args: string[]): string[] => [...args, "--profile", profile(name)];
  const uuids: Record<string, string> = {};
  let groupId = "";

  /** `receive --json` as `name`: every line, after asserting success. */
  const receive = async (name: string): Promise<Line[]> => ok(await cli(as(name, "receive", "--json")));
  const texts = (all: Line[], type = "message"): unknown[] => only(all, type).map((l) => l.text);

  before(async () => {
    server = await startHomeserver();
    for (const name of ["alice", "bob", "carol"]) {
      const [registered] = ok(await cli(as(name, "register", "--server", server.url, "--username", name, "--json")));
      uuids[name] = String(registered?.uuid);
    }
    // Bob and Alice know each other by name; Carol has never looked anyone up.
    ok(await cli(as("bob", "send", "alice", "Hi Alice", "--json")));
    ok(await cli(as("alice", "send", "bob", "Hi Bob", "--json")));
    await receive("bob");
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("has help for every new command, with --json and --profile", async () => {
    const top = await cli(["--help"]);
    for (const command of ["link", "approve-link", "devices", "unlink", "send-file", "download", "group"]) {
      assert.match(top.stdout, new RegExp(`^  ${command} `, "m"), `--help lists ${command}`);
    }
    const group = await cli(["group", "--help"]);
    assert.equal(group.code, 0);
    for (const sub of ["create", "add", "remove", "leave", "list", "send"])
      assert.match(group.stdout, new RegExp(`^  ${sub} `, "m"), `group --help lists ${sub}`);
    for (const command of [
      ["link"],
      ["approve-link"],
      ["devices"],
      ["unlink"],
      ["send-file"],
      ["download"],
      ["group", "create"],
      ["group", "add"],
      ["group", "remove"],
      ["group", "list"],
      ["group", "send"],
    ]) {
      const help = await cli([...command, "--help"]);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, new RegExp(`^Usage: zimchat-chat ${command.join(" ")} `));
      const flat = help.stdout.replace(/\s+/g, " ");
      assert.ok(flat.includes(" --json print one JSON object per line, for scripts "), flat);
      assert.ok(flat.includes(" --profile <dir> the profile directory holding this device (device.db) "), flat);
    }
    const chat = (await cli(["chat", "--help"])).stdout.replace(/\s+/g, " ");
    assert.ok(chat.includes("group:<id-or-title>"), "chat --help says how to name a group");
  });

  it("links a second device of Alice: link shows a URI and waits, approve-link on the primary lets it finish", async () => {
    const linking = start(as("alice2", "link", "--server", server.url, "--json"));
    const [code] = lines(await linking.seen('"type":"linkCode"'));
    const uri = String(code?.uri);
    assert.match(uri, /^zimchat-link:\?/);
    assert.equal(new URLSearchParams(uri.slice("zimchat-link:?".length)).get("server"), server.url);
    assert.deepEqual(code, { type: "linkCode", uri, expiresAt: code?.expiresAt });
    assert.ok(Number(code?.expiresAt) > Date.now(), "the code expires in the future");

    assert.deepEqual(ok(await cli(as("alice", "approve-link", uri, "--json"))), [
      { type: "linkApproved", username: "alice" },
    ]);
    const exit = await linking.exited;
    assert.equal(exit.code, 0, exit.stderr);
    assert.deepEqual(lines(exit), [
      code,
      {
        type: "linked",
        username: "alice",
        uuid: uuids.alice,
        deviceId: 2,
        server: server.url,
        profile: profile("alice2"),
      },
    ]);
    assert.equal(
      statSync(join(profile("alice2"), "device.db")).mode & 0o777,
      0o600,
      "the new device's store is owner-only",
    );
    assert.deepEqual(ok(await cli(as("alice2", "whoami", "--json"))), [
      {
        type: "whoami",
        username: "alice",
        uuid: uuids.alice,
        deviceId: 2,
        server: server.url,
        profile: profile("alice2"),
      },
    ]);
    // The same code cannot be approved twice.
    assert.equal(failed(await cli(as("alice", "approve-link", uri, "--json"))).code, "server_error");
  });

  it("link in text mode draws the QR code; Ctrl-C cancels and leaves no device behind", async () => {
    const linking = start(as("alice-cancelled", "link", "--server", server.url));
    const shown = await linking.seen("Waiting for the approval");
    const text = shown.split("\n");
    assert.equal(
      text[0],
      "To link this device, approve it on your primary device (device 1): scan this code, or run there",
    );
    assert.match(text[1] ?? "", /^ {2}zimchat-chat approve-link 'zimchat-link:\?server=[^']+'$/);
    const qr = text.slice(2, -2);
    assert.ok(
      qr.length >= 10 && qr.every((l) => /[█▀▄]|\x1b\[/.test(l)),
      `a QR code drawn with block characters:\n${qr.join("\n")}`,
    );
    assert.match(text.at(-2) ?? "", /^Waiting for the approval \(the code expires at \d\d:\d\d; Ctrl-C cancels\)…$/);
    linking.child.kill("SIGINT");
    const exit = await linking.exited;
    assert.deepEqual([exit.code, exit.stderr], [1, "zimchat-chat: linking cancelled: this device was not linked\n"]);
    assert.equal(existsSync(join(profile("alice-cancelled"), "device.db")), false);
  });

  it("refuses link on a used profile, approve-link on a secondary device, and a malformed link URI", async () => {
    assert.deepEqual(failed(await cli(as("alice2", "link", "--server", server.url, "--json"))), {
      type: "error",
      code: "already_registered",
      message: `${profile("alice2")} already holds alice's device on ${server.url}: pass another --profile`,
    });
    const linking = start(as("alice-refused", "link", "--server", server.url, "--json"));
    const uri = String(lines(await linking.seen('"type":"linkCode"'))[0]?.uri);
    assert.deepEqual(failed(await cli(as("alice2", "approve-link", uri, "--json"))), {
      type: "error",
      code: "not_primary",
      message: "this is alice's device 2: only the primary device (device 1) can approve a new device",
    });
    linking.child.kill("SIGINT");
    assert.equal((await linking.exited).code, 1);

    const garbage = await cli(as("alice", "approve-link", "https://example.org/?code=x"));
    assert.equal(garbage.code, 1);
    assert.match(
      garbage.stderr,
      /^zimchat-chat: not a zimchat-link: URI: pass the zimchat-link:\?… URI that zimchat-chat link shows on the new device, in quotes\n$/,
    );
  });

  it("both of Alice's devices receive Bob's message; the primary tells her a device was linked", async () => {
    const [sent] = only(ok(await cli(as("bob", "send", "alice", "Are you on your laptop now?", "--json"))), "sent");
    assert.equal(sent?.devices, 2, "Bob's message is encrypted for both of Alice's devices");

    const primary = await receive("alice");
    assert.deepEqual(
      only(primary, "message").map((l) => [l.from, l.fromUuid, l.fromDevice, l.text]),
      [["bob", uuids.bob, 1, "Are you on your laptop now?"]],
    );
    assert.deepEqual(only(primary, "devicesChanged"), [{ type: "devicesChanged", added: [2], removed: [] }]);

    // The new device has never looked Bob up: it names him by the username his message claims, once verified.
    const laptop = await receive("alice2");
    assert.deepEqual(
      only(laptop, "message").map((l) => [l.from, l.fromUuid, l.text]),
      [["bob", uuids.bob, "Are you on your laptop now?"]],
    );
    assert.deepEqual(only(laptop, "devicesChanged"), [], "a device is not told about itself");
    ok(await cli(as("bob", "send", "alice", "ping", "--json")));
  });

  it("devices lists both devices with their days and marks this one", async () => {
    const listed = ok(await cli(as("alice", "devices", "--json")));
    assert.deepEqual(only(listed, "device"), [
      { type: "device", id: 1, created: today(), lastSeen: today(), current: true },
      { type: "device", id: 2, created: today(), lastSeen: today(), current: false },
    ]);
    const text = await cli(as("alice2", "devices"));
    assert.equal(text.code, 0, text.stderr);
    assert.equal(
      text.stdout,
      `device 1: created ${today()} (today), last seen ${today()} (today)\n` +
        `device 2 (this device): created ${today()} (today), last seen ${today()} (today)\n`,
    );
  });

  it("a message Alice sends from one device shows on the other as outgoing", async () => {
    const [fromPrimary] = only(ok(await cli(as("alice", "send", "bob", "Yes, both work", "--json"))), "sent");
    assert.equal(fromPrimary?.type, "sent");
    const laptop = await receive("alice2");
    const [outgoing] = only(laptop, "outgoing");
    assert.deepEqual(outgoing, {
      type: "outgoing",
      to: "bob",
      toUuid: uuids.bob,
      fromDevice: 1,
      text: "Yes, both work",
      timestamp: fromPrimary?.timestamp,
      envelopeId: outgoing?.envelopeId,
    });
    assert.deepEqual(texts(laptop), ["ping"], "only Bob's message is an incoming one");

    const [fromLaptop] = only(ok(await cli(as("alice2", "send", "bob", "Sent from the laptop", "--json"))), "sent");
    const primary = await cli(as("alice", "receive"));
    assert.equal(primary.code, 0, primary.stderr);
    assert.ok(
      primary.stdout.includes(`you → bob (from your device 2): Sent from the laptop\n`),
      `the primary shows the laptop's message as its own:\n${primary.stdout}`,
    );
    assert.ok(!primary.stdout.includes("was linked"), "the notice is shown once");
    const bobs = await receive("bob");
    assert.deepEqual(
      only(bobs, "message").map((l) => [l.from, l.fromDevice, l.text]),
      [
        ["alice", 1, "Yes, both work"],
        ["alice", 2, "Sent from the laptop"],
      ],
    );
    assert.equal(fromLaptop?.devices, 1);
  });

  it("groups: created from the CLI, announced to every member and to Alice's other device", async () => {
    const [created] = only(
      ok(await cli(as("alice", "group", "create", "Braai crew", "bob", "carol", "--json"))),
      "groupChanged",
    );
    groupId = String((created?.group as { id?: string } | undefined)?.id);
    assert.match(groupId, uuidPattern);
    assert.deepEqual(created, {
      type: "groupChanged",
      group: { id: groupId, title: "Braai crew" },
      action: "created",
      users: ["bob", "carol"],
      members: ["alice", "bob", "carol"],
    });

    const [bobs] = only(await receive("bob"), "groupUpdated");
    assert.deepEqual(bobs, {
      type: "groupUpdated",
      group: { id: groupId, title: "Braai crew" },
      by: "alice",
      byUuid: uuids.alice,
      byThisAccount: false,
      added: ["alice", "bob", "carol"],
      removed: [],
      joined: true,
      left: false,
      members: ["alice", "bob", "carol"],
    });
    const carols = await cli(as("carol", "receive"));
    assert.equal(carols.code, 0, carols.stderr);
    assert.equal(
      carols.stdout,
      `alice added you to the group Braai crew (id ${groupId}). Members: alice, bob, carol.\n`,
    );
    const [laptops] = only(await receive("alice2"), "groupUpdated");
    assert.equal(laptops?.byThisAccount, true);
    assert.equal(laptops?.joined, true);

    assert.deepEqual(ok(await cli(as("bob", "group", "list", "--json"))), [
      {
        type: "group",
        id: groupId,
        title: "Braai crew",
        members: ["alice", "bob", "carol"],
        admins: ["alice"],
        member: true,
      },
      { type: "groupsListed", count: 1 },
    ]);
    const none = await cli(as("alice2", "group", "list"));
    assert.deepEqual([none.code, none.stdout], [0, `Braai crew (group ${groupId}): alice (admin), bob, carol\n`]);
  });

  it("groups: a message sent with group send reaches the other members and Alice's laptop", async () => {
    const [sent] = only(
      ok(await cli(as("alice", "group", "send", "Braai crew", "Saturday at six?", "--json"))),
      "groupSent",
    );
    assert.deepEqual(sent, {
      type: "groupSent",
      group: { id: groupId, title: "Braai crew" },
      text: "Saturday at six?",
      timestamp: sent?.timestamp,
      devices: 2,
    });
    const group = { id: groupId, title: "Braai crew" };

    for (const [name, from] of [
      ["bob", "alice"],
      ["carol", "alice"],
    ] as const) {
      const [message] = only(await receive(name), "message");
      assert.deepEqual(message, {
        type: "message",
        from,
        fromUuid: uuids.alice,
        fromDevice: 1,
        text: "Saturday at six?",
        timestamp: sent?.timestamp,
        envelopeId: message?.envelopeId,
        group,
      });
    }
    const [outgoing] = only(await receive("alice2"), "outgoing");
    assert.deepEqual(outgoing, {
      type: "outgoing",
      to: "Braai crew",
      group,
      fromDevice: 1,
      text: "Saturday at six?",
      timestamp: sent?.timestamp,
      envelopeId: outgoing?.envelopeId,
    });

    // Bob answers by the group's id; Alice reads it on her primary as text.
    ok(await cli(as("bob", "group", "send", groupId, "I'll", "bring", "the", "meat", "--json")));
    const primary = await cli(as("alice", "receive"));
    assert.match(primary.stdout, /^\[\d\d:\d\d\] \(Braai crew\) bob: I'll bring the meat$/m);
    assert.deepEqual(texts(await receive("carol")), ["I'll bring the meat"]);
  });

  it("groups: chat in a group shows its history and sends typed lines to the group", async () => {
    const chatting = ok(
      await cli(as("bob", "chat", "group:Braai crew", "--json", "--history", "2"), "Carol, bring salads\n/quit\n"),
    );
    const group = { id: groupId, title: "Braai crew" };
    assert.deepEqual(
      chatting
        .filter((l) => l.type !== "receipt")
        .map((l) => [l.type, l.direction, l.user, l.text, (l.group as { id?: string } | undefined)?.id]),
      [
        ["history", "in", "alice", "Saturday at six?", groupId],
        ["history", "out", "bob", "I'll bring the meat", groupId],
        ["chatReady", undefined, "Braai crew", undefined, groupId],
        ["groupSent", undefined, undefined, "Carol, bring salads", groupId],
      ],
    );
    assert.deepEqual(only(chatting, "chatReady")[0], { type: "chatReady", user: "Braai crew", group });
    assert.deepEqual(texts(await receive("carol")), ["Carol, bring salads"]);
    assert.deepEqual(texts(await receive("alice")), ["Carol, bring salads"]);
  });

  it("groups: only an admin changes members; a removed member no longer receives", async () => {
    assert.deepEqual(failed(await cli(as("bob", "group", "remove", "Braai crew", "carol", "--json"))), {
      type: "error",
      code: "group_refused",
      message: "only an admin of Braai crew can add or remove members (admins: alice)",
    });
    assert.equal(
      failed(await cli(as("alice", "group", "send", "No such group", "hello", "--json"))).code,
      "unknown_group",
    );

    const [removed] = only(
      ok(await cli(as("alice", "group", "remove", "Braai crew", "carol", "--json"))),
      "groupChanged",
    );
    assert.deepEqual(removed, {
      type: "groupChanged",
      group: { id: groupId, title: "Braai crew" },
      action: "removed",
      users: ["carol"],
      members: ["alice", "bob"],
    });

    const carols = await receive("carol");
    assert.deepEqual(
      only(carols, "groupUpdated").map((l) => [l.left, l.removed]),
      [[true, ["carol"]]],
    );
    const bobs = await receive("bob");
    assert.deepEqual(
      only(bobs, "groupUpdated").map((l) => [l.by, l.removed, l.left, l.members]),
      [["alice", ["carol"], false, ["alice", "bob"]]],
    );

    const [after] = only(
      ok(await cli(as("alice", "group", "send", "Braai crew", "Change of plan: Sunday", "--json"))),
      "groupSent",
    );
    assert.equal(after?.devices, 1, "only Bob's device is a recipient now");
    assert.deepEqual(texts(await receive("bob")), ["Change of plan: Sunday"]);
    const carolAfter = await receive("carol");
    assert.deepEqual(
      only(carolAfter, "message", "decryptionFailed"),
      [],
      "Carol receives nothing of what follows her removal",
    );
    assert.deepEqual(failed(await cli(as("carol", "group", "send", "Braai crew", "Wait for me", "--json"))), {
      type: "error",
      code: "group_refused",
      message: "you are no longer a member of Braai crew",
    });
    const [listed] = ok(await cli(as("carol", "group", "list", "--json")));
    assert.equal(listed?.member, false);
  });

  it("send-file and download: a file round-trips byte for byte, to a user and to a group", async () => {
    const files = join(dir, "files");
    mkdirSync(files);
    const original = randomBytes(300_000);
    const path = join(files, "minutes.bin");
    writeFileSync(path, original);

    const [sent] = only(
      ok(await cli(as("alice", "send-file", "bob", path, "--caption", "The minutes", "--json"))),
      "fileSent",
    );
    assert.deepEqual(sent, {
      type: "fileSent",
      to: "bob",
      toUuid: uuids.bob,
      fileName: "minutes.bin",
      size: original.length,
      caption: "The minutes",
      timestamp: sent?.timestamp,
    });

    const [message] = only(await receive("bob"), "message");
    const id = String(message?.envelopeId);
    // The pointer's key and digest stay in the store: only the name and size are shown.
    assert.deepEqual(message, {
      type: "message",
      from: "alice",
      fromUuid: uuids.alice,
      fromDevice: 1,
      text: "The minutes",
      timestamp: sent?.timestamp,
      envelopeId: id,
      attachment: { fileName: "minutes.bin", size: original.length },
    });
    const inbox = join(dir, "bob-inbox");
    mkdirSync(inbox);
    const [saved] = ok(await cli(as("bob", "download", id, "--out", inbox, "--json")));
    assert.deepEqual(saved, {
      type: "downloaded",
      messageId: id,
      path: join(inbox, "minutes.bin"),
      size: original.length,
      fileName: "minutes.bin",
    });
    assert.ok(readFileSync(join(inbox, "minutes.bin")).equals(original), "the download is byte-identical");
    // Downloading again never replaces the first copy.
    const again = await cli(as("bob", "download", id, "--out", inbox));
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(readdirSync(inbox).sort(), ["minutes (2).bin", "minutes.bin"]);
    assert.ok(readFileSync(join(inbox, "minutes (2).bin")).equals(original));

    // Alice's laptop has the sent transcript with the file, and can fetch it too.
    const transcript = only(await receive("alice2"), "outgoing").find((l) => l.attachment);
    assert.deepEqual(transcript?.attachment, { fileName: "minutes.bin", size: original.length });
    const copy = join(dir, "laptop-copy.bin");
    ok(await cli(as("alice2", "download", String(transcript?.envelopeId), "--out", copy, "--json")));
    assert.ok(readFileSync(copy).equals(original));

    // To a group, shown in text with the command to fetch it.
    const photo = join(files, "braai.jpg");
    writeFileSync(photo, original.subarray(0, 1000));
    ok(await cli(as("bob", "send-file", "group:Braai crew", photo, "--json")));
    const shown = await cli(as("alice", "receive"));
    const line = new RegExp(
      `^\\[\\d\\d:\\d\\d\\] \\(Braai crew\\) bob: \\[file: braai\\.jpg, 1000 B; zimchat-chat download (${uuidPattern.source.slice(1, -1)})\\]$`,
      "m",
    );
    const groupFileId = line.exec(shown.stdout)?.[1];
    assert.ok(groupFileId, `the file's line names its message id:\n${shown.stdout}`);
    const cwd = join(dir, "alice-cwd");
    mkdirSync(cwd);
    const fetched = await cli(as("alice", "download", groupFileId), undefined, cwd);
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.equal(fetched.stdout, `Saved braai.jpg (1000 B) to ${join(cwd, "braai.jpg")}\n`);
    assert.ok(readFileSync(join(cwd, "braai.jpg")).equals(original.subarray(0, 1000)));

    assert.deepEqual(failed(await cli(as("bob", "download", "00000000-0000-4000-8000-000000000000", "--json"))), {
      type: "error",
      code: "unknown_message",
      message:
        "this device has no message 00000000-0000-4000-8000-000000000000 with a file (receive and chat show each file's message id)",
    });
    assert.equal(
      failed(await cli(as("bob", "send-file", "alice", join(files, "missing.bin"), "--json"))).message,
      `cannot read ${join(files, "missing.bin")}: no such file`,
    );
  });

  it("download never takes a path from the sender's file name", () => {
    const id = "0123456789abcdef";
    assert.equal(safeFileName("../../.bashrc", id), "_.._.bashrc");
    assert.equal(safeFileName("/etc/passwd", id), "_etc_passwd");
    assert.equal(safeFileName("a\\..\\b.txt", id), "a_.._b.txt");
    assert.equal(safeFileName("evil\u001b[2Jname", id), "evil[2Jname");
    assert.equal(safeFileName("..", id), "attachment-01234567");
    assert.equal(safeFileName(undefined, id), "attachment-01234567");
  });

  it("unlink: a device that unlinks itself is gone; the primary sees it live and unlinks others", async () => {
    const live = start(as("alice", "receive", "--wait", "30", "--json"));
    await live.seen('"type":"queueEmpty"');
    const [unlinked] = only(ok(await cli(as("alice2", "unlink", "2", "--json"))), "unlinked");
    assert.deepEqual(unlinked, { type: "unlinked", deviceId: 2, current: true });
    await live.seen('"type":"devicesChanged"');
    live.child.kill("SIGINT");
    const exit = await live.exited;
    assert.equal(exit.code, 0, exit.stderr);
    assert.deepEqual(only(lines(exit), "devicesChanged"), [{ type: "devicesChanged", added: [], removed: [2] }]);

    assert.deepEqual(only(ok(await cli(as("alice", "devices", "--json"))), "device"), [
      { type: "device", id: 1, created: today(), lastSeen: today(), current: true },
    ]);
    const gone = await cli(as("alice2", "receive"));
    assert.deepEqual(
      [gone.code, gone.stderr],
      [1, `zimchat-chat: ${server.url} does not recognise this device (was it unlinked, or the account removed?)\n`],
    );
    const [sent] = only(ok(await cli(as("bob", "send", "alice", "Just you now?", "--json"))), "sent");
    assert.equal(sent?.devices, 1);

    // The primary unlinks another device: link a third one, then remove it.
    const linking = start(as("alice3", "link", "--server", server.url, "--json"));
    const uri = String(lines(await linking.seen('"type":"linkCode"'))[0]?.uri);
    ok(await cli(as("alice", "approve-link", uri, "--json")));
    const linked = lines(await linking.exited).find((l) => l.type === "linked");
    const third = Number(linked?.deviceId);
    assert.equal(third, 2, "the lowest free id is reused");
    // Sending right after the link: the primary notices the new device (in text: what happened, what to do
    // if it was not you) and the new device gets the sent transcript.
    const notice = await cli(as("alice", "send", "bob", "Welcome, third device"));
    assert.equal(notice.code, 0, notice.stderr);
    assert.ok(
      notice.stdout.includes(
        `A new device (id ${third}) was linked to your account. If that was not you, run zimchat-chat unlink ${third} on your primary device.\n`,
      ),
      notice.stdout,
    );
    assert.deepEqual(
      only(await receive("alice3"), "outgoing").map((l) => [l.to, l.text]),
      [[uuids.bob, "Welcome, third device"]],
    );
    const removed = ok(await cli(as("alice", "unlink", String(third), "--json")));
    assert.deepEqual(only(removed, "unlinked"), [{ type: "unlinked", deviceId: third, current: false }]);
    assert.equal((await cli(as("alice3", "receive"))).code, 1);

    assert.equal(
      failed(await cli(as("alice", "unlink", "9", "--json"))).message,
      "alice has no device 9 (zimchat-chat devices lists them)",
    );
    assert.deepEqual(failed(await cli(as("alice", "unlink", "1", "--json"))), {
      type: "error",
      code: "invalid_argument",
      message: "device 1 is the primary device and cannot be unlinked",
    });
    const bad = await cli(as("alice", "unlink", "200"));
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /'200' is invalid for argument 'deviceId'\. must be a device id \(1 to 127\)/);
  });
});
