/**
 * The IRC bridge's limits and its state, against a real ngircd (flood
 * protection at its defaults): long and multi-line messages split, cut or
 * refused per policy with no flood disconnect, nick collisions, puppets
 * with idle reaping, attachments withheld, `/status`, and the bridge's
 * store across restarts (and its absence).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryLogger, testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";
import { chatServerSkip, ngircdAvailable, startNgircd, type NgircdServer } from "@zimchat/testing/chat-servers";
import {
  BridgeStoreMissingError,
  bridgeStoreFileName,
  createBridge,
  ircConfigSchema,
  filesConfigSchema,
  type Bridge,
  type FilesConfig,
  type IrcConfigInput,
} from "../src/index.js";
import { IrcUser, lines, nextWith } from "./support/irc-user.js";

const skip = chatServerSkip(ngircdAvailable());

describe("IRC bridge limits and state, against a real ngircd", { skip }, () => {
  let ngircd: NgircdServer;
  let hs: TestHomeserver;
  let alice: TestUser;
  let bob: TestUser;

  before(async () => {
    ngircd = await startNgircd({ channels: ["#long", "#cut", "#nick", "#puppets", "#files", "#pub"] });
    hs = await testHomeserver();
    alice = await hs.user("alice");
    bob = await hs.user("bob");
  });
  after(async () => {
    await hs?.close();
    await ngircd?.stop();
  });

  /** Starts a bridge bot `username` with these IRC settings, and a group of alice and bob bridged to `channel`. */
  async function bridged(
    username: string,
    channel: string,
    irc: Partial<IrcConfigInput>,
    extra: { attachments?: boolean; files?: FilesConfig } = {},
  ): Promise<{ bridge: Bridge; groupId: string; dir: string; logger: MemoryLogger }> {
    const logger = new MemoryLogger();
    let dir = "";
    const bridge = await hs.bot(
      (options) => {
        dir = options.dir;
        return createBridge(
          {
            network: "irc",
            zimchat: { dir: options.dir, server: options.server, username, allowInsecureHttp: false },
            irc: ircConfigSchema.parse({ host: "127.0.0.1", port: ngircd.port, ...irc }),
            ...(extra.files ? { files: extra.files } : {}),
          },
          { logger: options.logger, handleSignals: false },
        );
      },
      { logger },
    );
    const group = await alice.createGroup(channel, ["bob"]);
    await alice.client.bridgeGroup(group.id, {
      bot: username,
      network: "irc",
      target: channel,
      ...(extra.attachments ? { attachments: true } : {}),
    });
    // The bridge's announcement reaches both members once it joined.
    for (const u of [alice, bob]) await nextWith(u, group.id, /^Bridging this group/);
    return { bridge, groupId: group.id, dir, logger };
  }

  it("a 20-line message is paced out whole, and a 21-line one is refused under `refuse`: no flood disconnect", async () => {
    const dave = new IrcUser(ngircd, "dave", "#long");
    await dave.connect();
    const { bridge, groupId, logger } = await bridged("longbridge", "#long", {
      nick: "longbridge",
      maxLines: 20,
      longMessages: "refuse",
    });
    const twenty = Array.from({ length: 20 }, (_, i) => `line ${i + 1} ${"x".repeat(250)}`);
    await alice.send(`group:${groupId}`, twenty.join("\n"));
    await dave.until("20 lines", () => lines(dave, "longbridge").length >= 20, 60_000);
    assert.deepEqual(
      lines(dave, "longbridge"),
      twenty.map((l) => `<alice> ${l}`),
    );
    await alice.send(`group:${groupId}`, [...twenty, "one too many"].join("\n"));
    await nextWith(alice, groupId, /^Not sent to IRC: it would take 21 IRC lines, and this bridge sends at most 20/);
    assert.equal(bridge.status().reconnects, 0, "never disconnected for flooding");
    assert.ok(!logger.lines.some((l) => /disconnected/.test(l.message)));
    assert.equal(bridge.counters.refused, 1);
    // Paced: after the burst of 4, about one line a second (a lower bound: a loaded machine only makes it slower).
    const times = dave.heard.filter((h) => h.nick === "longbridge").map((h) => h.time);
    assert.ok(times.at(-1)! - times[0]! >= 15 * 1_000 * 0.9, `20 lines in ${times.at(-1)! - times[0]!} ms`);
    dave.close();
  });

  it("a 5,000-character line is cut to the line cap under `truncate` (the default), and the group is told", async () => {
    const erin = new IrcUser(ngircd, "erin", "#cut");
    await erin.connect();
    const { bridge, groupId } = await bridged("cutbridge", "#cut", { nick: "cutbridge" });
    const long = Array.from({ length: 1000 }, (_, i) => `w${i % 10}xx`).join(" "); // 4,999 characters
    await alice.send(`group:${groupId}`, long);
    await erin.until("5 lines", () => lines(erin, "cutbridge").length >= 5, 30_000);
    const heard = lines(erin, "cutbridge");
    assert.equal(heard.length, 5);
    assert.ok(heard.slice(0, 4).every((l) => l.startsWith("<alice> w0xx") || /^<alice> w\dxx/.test(l)));
    assert.ok(
      long.startsWith(
        heard
          .slice(0, 4)
          .map((l) => l.slice("<alice> ".length))
          .join(" "),
      ),
    );
    assert.match(heard[4]!, /^<alice> \[\d+ more lines not sent: messages are cut to 5 IRC lines\]$/);
    for (const l of heard) assert.ok(Buffer.byteLength(`PRIVMSG #cut :${l}\r\n`) <= 512);
    await nextWith(alice, groupId, /^Cut for IRC: sent the first 4 of \d+ lines/);
    assert.equal(bridge.counters.cut, 1);
    erin.close();
  });

  it("a taken nick: the bridge registers under a fallback and relays as usual", async () => {
    const squatter = new IrcUser(ngircd, "nickbridge", "#nick");
    await squatter.connect();
    const { bridge, groupId } = await bridged("nickbridge", "#nick", { nick: "nickbridge" });
    await alice.send(`group:${groupId}`, "who am I on IRC?");
    await squatter.until("the line", () => lines(squatter, "nickbridge_").includes("<alice> who am I on IRC?"));
    assert.equal(bridge.status().connected, true);
    squatter.close();
  });

  it("puppets: each member speaks as their own nick (a collision gets a fallback), nothing echoes, idle ones quit", async () => {
    const frank = new IrcUser(ngircd, "frank", "#puppets");
    await frank.connect();
    const squatter = new IrcUser(ngircd, "bob[zim]", "#puppets");
    await squatter.connect();
    const { bridge, groupId } = await bridged("puppetbridge", "#puppets", {
      nick: "puppetbridge",
      puppets: { enabled: true, idleMinutes: 0.05 },
    });
    await alice.send(`group:${groupId}`, "alice as herself");
    await frank.until("alice's puppet", () => lines(frank, "alice[zim]").includes("alice as herself"));
    await bob.send(`group:${groupId}`, "bob as himself");
    await frank.until("bob's puppet", () => lines(frank, "bob[zim]_").includes("bob as himself"));
    assert.deepEqual(lines(frank, "puppetbridge"), [], "the relay nick did not speak for them");
    frank.say("hello puppets");
    await nextWith(alice, groupId, "frank (IRC): hello puppets");
    // The puppets' own lines were not relayed back: frank's is the only IRC line in the group.
    await new Promise((r) => setTimeout(r, 1_000));
    const fromIrc = alice.messages.filter((m) => m.conversation === `group:${groupId}` && / \(IRC\): /.test(m.text));
    assert.deepEqual(
      fromIrc.map((m) => m.text),
      ["frank (IRC): hello puppets"],
    );
    assert.equal(bridge.counters.fromNetwork, 1);
    // Idle for 3 s (idleMinutes 0.05): both puppets quit.
    await frank.until("the puppets quit", () => frank.quit.has("alice[zim]") && frank.quit.has("bob[zim]_"), 15_000);
    assert.equal(bridge.status().puppets, 0);
    // A member's next message opens the puppet again, under the name the store kept.
    await bob.send(`group:${groupId}`, "bob again");
    await frank.until("bob's puppet again", () => lines(frank, "bob[zim]_").includes("bob again"));
    frank.close();
    squatter.close();
  });

  it("attachments are announced by name and size, never sent; /status counts; the store survives restarts and its loss stops the start", async () => {
    const gina = new IrcUser(ngircd, "gina", "#files");
    await gina.connect();
    const { bridge, groupId, dir } = await bridged("filebridge", "#files", { nick: "filebridge" });
    const secret = "the file's bytes never reach IRC";
    await alice.sendFile(`group:${groupId}`, Buffer.from(secret.repeat(40)), {
      fileName: "notes.txt",
      caption: "read",
    });
    await gina.until("the file line", () => lines(gina, "filebridge").length >= 1);
    assert.deepEqual(lines(gina, "filebridge"), ["<alice> [file: notes.txt, 1.3 KB] read"]);
    assert.ok(!gina.heard.some((h) => h.message.includes("never reach")));
    assert.equal(bridge.counters.attachmentsWithheld, 1);

    await alice.send("filebridge", "/status");
    const status = await alice.nextMessage({ conversation: bridge.bot.uuid });
    assert.match(
      status.text,
      /^IRC bridge @filebridge: connected \(0 reconnects\); targets: #files; groups bridged: 1/,
    );
    assert.match(status.text, /relayed to IRC: 1, from IRC: 0; queued: 0/);

    // Restarted on its directory: it rejoins #files from its store and relays, no new approval needed.
    await bridge.stop();
    await gina.until("the bridge quits", () => gina.quit.has("filebridge"));
    gina.joined.delete("filebridge");
    const again = createBridge(
      {
        network: "irc",
        zimchat: { dir, allowInsecureHttp: false },
        irc: ircConfigSchema.parse({ host: "127.0.0.1", port: ngircd.port, nick: "filebridge" }),
      },
      { logger: new MemoryLogger(), handleSignals: false },
    );
    await again.start();
    await gina.until("the bridge rejoins", () => gina.joined.has("filebridge"));
    await alice.send(`group:${groupId}`, "after the bridge restarted");
    await gina.until("the line", () => lines(gina, "filebridge").includes("<alice> after the bridge restarted"));
    await again.stop();

    // Its store lost: it refuses to start instead of relaying with no record of what was approved and queued.
    rmSync(join(dir, bridgeStoreFileName));
    const lost = createBridge(
      {
        network: "irc",
        zimchat: { dir, allowInsecureHttp: false },
        irc: ircConfigSchema.parse({ host: "127.0.0.1", port: ngircd.port, nick: "filebridge" }),
      },
      { logger: new MemoryLogger(), handleSignals: false },
    );
    await assert.rejects(lost.start(), BridgeStoreMissingError);
    gina.close();
  });

  it("a group that asked for attachments gets links to files the bridge publishes, within its caps", async () => {
    const hana = new IrcUser(ngircd, "hana", "#pub");
    await hana.connect();
    const filesDir = mkdtempSync(join(tmpdir(), "bridge-files-"));
    const files = filesConfigSchema.parse({
      dir: filesDir,
      baseUrl: "https://files.example.test/b/",
      maxFileBytes: 2048,
    });
    const { bridge, groupId } = await bridged("pubbridge", "#pub", { nick: "pubbridge" }, { attachments: true, files });
    const bytes = Buffer.from("published on purpose ".repeat(20));
    await alice.sendFile(`group:${groupId}`, bytes, { fileName: "../../etc/minutes.txt" });
    await hana.until("the link", () => lines(hana, "pubbridge").length >= 1);
    const line = lines(hana, "pubbridge")[0]!;
    const match =
      /^<alice> \[file: \.\.\/\.\.\/etc\/minutes\.txt, 420 B\] https:\/\/files\.example\.test\/b\/([0-9a-f]{32})\/minutes\.txt$/.exec(
        line,
      );
    assert.ok(match, line);
    assert.deepEqual(
      readFileSync(join(filesDir, match[1]!, "minutes.txt")),
      bytes,
      "the decrypted file, under its token",
    );
    assert.equal(bridge.counters.attachmentsPublished, 1);
    // Over the per-file cap: announced only, and the group told why.
    await alice.sendFile(`group:${groupId}`, Buffer.alloc(4096, 1), { fileName: "big.bin" });
    await nextWith(
      alice,
      groupId,
      /^File not published on IRC \(only its name and size were sent\): larger than the 2048-byte limit/,
    );
    await hana.until("the big file's line", () => lines(hana, "pubbridge").length >= 2);
    assert.equal(lines(hana, "pubbridge")[1], "<alice> [file: big.bin, 4.0 KB]");
    assert.equal(bridge.counters.attachmentsWithheld, 1);
    hana.close();
  });

  it("a target outside the bridge's allowed channels is refused, and the group is told", async () => {
    const bridge = await hs.bot(
      (options) =>
        createBridge(
          {
            network: "irc",
            zimchat: { dir: options.dir, server: options.server, username: "strictbridge", allowInsecureHttp: false },
            irc: ircConfigSchema.parse({ host: "127.0.0.1", port: ngircd.port, nick: "strict", channels: ["#only"] }),
          },
          { logger: options.logger, handleSignals: false },
        ),
      {},
    );
    const group = await alice.createGroup("elsewhere", ["bob"]);
    await alice.client.bridgeGroup(group.id, { bot: "strictbridge", network: "irc", target: "#elsewhere" });
    await nextWith(bob, group.id, "Not bridging this group: #elsewhere is not an IRC target this bridge may join.");
    await alice.send(`group:${group.id}`, "does this leak?");
    await nextWith(alice, group.id, /^I am an IRC bridge and relay nothing from this group/);
    assert.equal(bridge.status().targets.length, 0);
    assert.equal(bridge.counters.toNetwork, 0);
  });
});
