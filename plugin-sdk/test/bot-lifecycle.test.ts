/**
 * A bot's life around its handlers: the generated /help, one process per
 * bot directory (a lock, and the `displaced` event when a copy connects),
 * clean stops on SIGINT/SIGTERM, and what a lost directory means. Real
 * homeserver, real client, real stores.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SqliteDeviceStore, ZimClient } from "@zimchat/client";
import {
  Bot,
  BotConfigError,
  BotLockedError,
  MemoryLogger,
  lockFileName,
  storeFileName,
  type BotOptions,
} from "../src/bot/index.js";
import { testHomeserver, type TestHomeserver } from "@zimchat/testing";

const plain = (options: BotOptions): Bot => new Bot({ description: "A bot with no commands of its own.", ...options });

describe("a bot's lifecycle", () => {
  let hs: TestHomeserver;
  before(async () => {
    hs = await testHomeserver({ registration: "invite" });
  });
  after(async () => hs?.close());

  it("/help of a bot without commands lists /help, and never says it has none", async () => {
    const bot = new Bot({ dir: hs.tempDir("help"), description: "I echo.", logger: false });
    assert.equal(bot.helpText(), "I echo.\n\nCommands:\n/help - this list");
    bot.command("ping", "is the bot alive?", (ctx) => ctx.reply("pong"));
    assert.equal(bot.helpText(), "I echo.\n\nCommands:\n/ping - is the bot alive?\n/help - this list");
  });

  it("locks its directory while it runs: a second bot on it is refused, naming the holder", async () => {
    const bot = await hs.bot(plain, { username: "lockbot" });
    const lock = join(bot.dir, lockFileName);
    assert.equal((JSON.parse(readFileSync(lock, "utf8")) as { pid: number }).pid, process.pid);

    const second = new Bot({ dir: bot.dir, logger: false });
    const error = await second.start().then(
      () => assert.fail("a second bot started on the same directory"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof BotLockedError, String(error));
    assert.equal(error.holder.pid, process.pid);
    assert.match(
      error.message,
      new RegExp(
        `^${bot.dir.replace(/[.]/g, "\\.")} is in use by another running bot \\(process ${process.pid}, since .*\\): `,
      ),
    );
    assert.match(error.message, new RegExp(`if it is not running any more, delete ${lock.replace(/[.]/g, "\\.")}\\.$`));
    assert.equal(bot.running, true, "the first bot is undisturbed");

    await bot.stop();
    assert.equal(existsSync(lock), false, "stop() releases the lock");

    // A lock left by a process that is gone is taken over.
    const gone = spawnSync(process.execPath, ["-e", "process.pid"]).pid!;
    writeFileSync(lock, JSON.stringify({ pid: gone, hostname: (await import("node:os")).hostname(), since: 0 }));
    const again = new Bot({ dir: bot.dir, logger: false });
    await again.start();
    assert.equal((JSON.parse(readFileSync(lock, "utf8")) as { pid: number }).pid, process.pid);
    await again.stop();
  });

  it("when a copy of its device connects, the homeserver displaces it: the bot stops and runs its displaced hooks", async () => {
    const logger = new MemoryLogger();
    const bot = await hs.bot(plain, { username: "displacedbot", logger });
    let displaced = 0;
    const stoppedFirst: boolean[] = [];
    bot.onDisplaced((b) => {
      displaced++;
      stoppedFirst.push(!b.running);
    });
    // The same device, from the same store, in another client (as a copied directory would run).
    const copy = new ZimClient({ store: new SqliteDeviceStore(join(bot.dir, storeFileName)) });
    await copy.connect();
    await logger.waitFor(
      /The homeserver closed the connection of @displacedbot: another connection of this device took over/,
    );
    await logger.waitFor(/Bot @displacedbot stopped\./);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual([displaced, stoppedFirst], [1, [true]]);
    assert.equal(existsSync(join(bot.dir, lockFileName)), false);
    await copy.close();
  });

  it("installs SIGINT and SIGTERM handlers while it runs (one set for all bots), and removes them on stop; handleSignals: false opts out", async () => {
    const before = [process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")];
    const one = await hs.bot(plain, { username: "signalbot1" });
    assert.deepEqual(
      [process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")],
      [before[0]! + 1, before[1]! + 1],
    );
    const two = await hs.bot(plain, { username: "signalbot2" });
    assert.deepEqual(
      [process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")],
      [before[0]! + 1, before[1]! + 1],
    );
    await one.stop();
    assert.equal(process.listenerCount("SIGTERM"), before[1]! + 1, "still one bot running");
    await two.stop();
    assert.deepEqual([process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")], before);

    const quiet = await hs.bot((options) => new Bot({ ...options, handleSignals: false }), { username: "signalbot3" });
    assert.deepEqual([process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")], before);
    await quiet.stop();
  });

  it("a deleted bot directory whose username is registered: says the keys are gone and how to recover", async () => {
    const bot = await hs.bot(plain, { username: "lostdirbot" });
    await bot.stop();
    rmSync(bot.dir, { recursive: true, force: true });
    const again = new Bot({
      dir: bot.dir,
      server: hs.url,
      username: "lostdirbot",
      inviteToken: await hs.invite(),
      logger: false,
    });
    const error = await again.start().then(
      () => assert.fail("registered twice"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof BotConfigError, String(error));
    assert.equal(
      error.message,
      `The username lostdirbot is already registered on ${hs.url}, and ${bot.dir} holds no bot. ` +
        "If this was the bot's directory (deleted, emptied or replaced), its keys went with it: that account cannot be used from here again, " +
        "and nothing sent to it can be decrypted. To recover: restore the directory from a backup; or register under another username (the username option); " +
        "or ask the homeserver's operator to delete the old account, which frees the username: zimchat admin account delete lostdirbot.",
    );
    assert.equal(existsSync(join(bot.dir, lockFileName)), false, "a refused start releases the lock");
  });
});
