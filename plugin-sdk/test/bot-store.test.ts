import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  Bot,
  BotConfigError,
  BotStoreError,
  MemoryLogger,
  markerFileName,
  storeFileName,
  type BotOptions,
} from "../src/bot/index.js";
import { testHomeserver, type TestBotOptions, type TestHomeserver, type TestUser } from "@zimchat/testing";

/** An echo bot that counts what it handled. */
function echo(options: BotOptions): Bot {
  const bot = new Bot(options);
  bot.on("message", (ctx) => ctx.reply(`echo: ${ctx.message.text}`));
  return bot;
}

const removeStore = (dir: string): void => {
  for (const suffix of ["", "-wal", "-shm"]) rmSync(join(dir, storeFileName + suffix), { force: true });
};

describe("the bot's protocol store", () => {
  let hs: TestHomeserver;
  let alice: TestUser;
  before(async () => {
    hs = await testHomeserver({ registration: "invite" });
    alice = await hs.user("alice");
  });
  after(async () => hs?.close());

  it("registers with an invite, writes bot.json, and logs its username and identity fingerprint (never the token)", async () => {
    const logger = new MemoryLogger();
    let token = "";
    const bot = await hs.bot(
      (options) => {
        token = options.inviteToken ?? "";
        return echo(options);
      },
      { username: "storebot", logger },
    );
    assert.ok(token.startsWith("zc_"), "the homeserver registers by invite");
    const marker = JSON.parse(readFileSync(join(bot.dir, markerFileName), "utf8")) as Record<string, unknown>;
    assert.deepEqual(
      { uuid: marker.uuid, username: marker.username, deviceId: marker.deviceId, server: marker.server },
      { uuid: bot.uuid, username: "storebot", deviceId: 1, server: hs.url },
    );
    assert.match(logger.text(), /Bot @storebot \(account [0-9a-f-]{36}, device 1\) is running/);
    const fingerprint = bot.identityFingerprint();
    assert.match(fingerprint, /^\d{5}( \d{5}){5}$/);
    assert.ok(
      logger.text().includes(`Identity fingerprint (the bot's half of every safety number with it): ${fingerprint}`),
    );
    const number = (await alice.client.safetyNumber("storebot")).digits;
    const half = fingerprint.replace(/ /g, "");
    assert.ok(
      number.startsWith(half) || number.endsWith(half),
      "alice's safety number with the bot contains the fingerprint",
    );
    assert.equal(
      (await bot.client.safetyNumber("alice")).digits,
      number,
      "ctx.safetyNumber() gives the same number on the bot's side",
    );
    assert.equal(logger.text().includes(token), false, "the invite token is never logged");
  });

  it("a bot restarted mid-conversation keeps decrypting, both ways, including what was sent while it was down", async () => {
    const logger = new MemoryLogger();
    const first = await hs.bot(echo, { username: "restartbot", logger });
    const dir = first.dir;
    for (const text of ["one", "two"]) {
      await alice.send("restartbot", text);
      assert.equal((await alice.nextMessage()).text, `echo: ${text}`);
    }
    await first.stop();
    await alice.send("restartbot", "sent while you were down");
    const second = await hs.bot(echo, { dir, logger });
    assert.equal(second.uuid, first.uuid, "the same account, from its store");
    assert.equal((await alice.nextMessage()).text, "echo: sent while you were down");
    await second.sendText("alice", "the bot speaks first");
    assert.equal((await alice.nextMessage()).text, "the bot speaks first");
    await alice.send("restartbot", "three");
    assert.equal((await alice.nextMessage()).text, "echo: three");
    await second.stop();
    const third = await hs.bot(echo, { dir, logger });
    await alice.send("restartbot", "four");
    assert.equal((await alice.nextMessage()).text, "echo: four");
    await third.stop();
    assert.equal(/Could not decrypt/.test(logger.text()), false, "nothing failed to decrypt");
  });

  it("a registered bot whose store was deleted refuses to start with the documented message, and does not register again", async () => {
    const bot = await hs.bot(echo, { username: "lostbot" });
    const { dir, uuid } = bot;
    await bot.stop();
    removeStore(dir);
    const again = new Bot({ dir, server: hs.url, username: "lostbot", inviteToken: await hs.invite(), logger: false });
    const error = await again.start().then(
      () => assert.fail("the bot started without its store"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof BotStoreError, `a BotStoreError, not ${String(error)}`);
    assert.equal(error.problem, "missing");
    assert.equal(error.registration.uuid, uuid);
    assert.equal(
      error.message,
      `Bot "lostbot" (account ${uuid}, device 1 on ${hs.url}) is registered in ${dir}, but its protocol store ${join(dir, storeFileName)} is missing, so it cannot decrypt. ` +
        "It will not register again by itself. To recover: restore device.db from a backup; " +
        "or re-link the bot as a new device from its account's primary device (start it in a new directory with the link option, --link, and approve the link there); " +
        "or re-register it under a new username in a new directory (its users will see a new safety number).",
    );
    assert.equal(existsSync(join(dir, storeFileName)), false, "no new store was created");
    assert.equal(
      await alice.client.api.lookupUsername("lostbot").then((r) => r.uuid),
      uuid,
      "the username still names the old account",
    );
    assert.equal(again.running, false);
  });

  it("an unreadable store, an empty store, or another account's store is refused too", async () => {
    const bot = await hs.bot(echo, { username: "brokenbot" });
    const other = await hs.bot(echo, { username: "otherbot" });
    const { dir } = bot;
    await bot.stop();
    await other.stop();
    const start = (): Promise<unknown> =>
      new Bot({ dir, logger: false }).start().then(
        () => assert.fail("started"),
        (e: unknown) => e,
      );

    removeStore(dir);
    writeFileSync(
      join(dir, storeFileName),
      "this is not a SQLite database, just some text that is long enough to be read as a header".repeat(20),
    );
    const unreadable = await start();
    assert.ok(unreadable instanceof BotStoreError);
    assert.equal(unreadable.problem, "unreadable");
    assert.match(unreadable.message, /device\.db cannot be opened, so it cannot decrypt/);

    removeStore(dir);
    writeFileSync(join(dir, storeFileName), "");
    const empty = await start();
    assert.ok(empty instanceof BotStoreError);
    assert.equal(empty.problem, "empty");
    assert.match(empty.message, /holds no registered device/);

    removeStore(dir);
    writeFileSync(join(dir, storeFileName), readFileSync(join(other.dir, storeFileName)));
    const foreign = await start();
    assert.ok(foreign instanceof BotStoreError);
    assert.equal(foreign.problem, "other_account");
  });

  it("starts the registered bot whatever username is passed, and refuses an unregistered directory without a server", async () => {
    const bot = await hs.bot(echo, { username: "ownerbot" });
    await bot.stop();
    const logger = new MemoryLogger();
    const same = new Bot({ dir: bot.dir, username: "someoneelse", logger });
    try {
      await same.start();
      assert.equal(same.username, "ownerbot");
      assert.match(
        logger.text(),
        /holds the bot @ownerbot: starting it \(the username someoneelse is only used to register a new bot\)/,
      );
    } finally {
      await same.stop();
    }
    await assert.rejects(
      new Bot({ dir: hs.tempDir("empty"), logger: false }).start(),
      (e: unknown) => e instanceof BotConfigError && /holds no registered bot/.test(e.message),
    );
  });

  it("re-linking: a bot linked as a new device of an account whose primary approves it", async () => {
    const owner = await hs.user("linkedbot");
    const logger = new MemoryLogger();
    const starting = hs.bot((options: TestBotOptions) => echo({ ...options, link: true }), { logger });
    const line = await logger.waitFor(/zimchat-chat approve-link '([^']+)'/, 15_000);
    await owner.client.approveLink(/approve-link '([^']+)'/.exec(line.message)![1]!);
    const bot = await starting;
    assert.equal(bot.uuid, owner.uuid);
    assert.equal(bot.registration?.deviceId, 2);
    await alice.send("linkedbot", "are you the bot?");
    assert.equal((await alice.nextMessage()).text, "echo: are you the bot?");
  });
});
