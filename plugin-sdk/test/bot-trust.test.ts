import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { PrivateKey, SignalMessage } from "@signalapp/libsignal-client";
import { DecryptionFailureReason, MemoryDeviceStore, ZimClient, type DeviceListChangedEvent } from "@zimchat/client";
import { Bot, MemoryLogger, type BotOptions, type DecryptionFailure, type IdentityChange } from "../src/bot/index.js";
import { testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";

function echo(options: BotOptions): Bot {
  const bot = new Bot(options);
  bot.on("message", (ctx) => ctx.reply(`echo: ${ctx.message.text}`));
  return bot;
}

describe("bot trust: allowlist, verification, identity changes, decryption failures", () => {
  let hs: TestHomeserver;
  let alice: TestUser;
  let mallory: TestUser;
  before(async () => {
    hs = await testHomeserver();
    alice = await hs.user("alice");
    mallory = await hs.user("mallory");
  });
  after(async () => hs?.close());

  it("an allowlist bot ignores a user who is not on it: no handler runs, no reply", async () => {
    const logger = new MemoryLogger();
    const handled: string[] = [];
    const bot = await hs.bot(
      (options) => {
        const b = new Bot({ ...options, trust: { allow: ["alice"] } });
        b.on("message", async (ctx) => {
          handled.push(ctx.from);
          await ctx.reply("hello, friend");
        });
        return b;
      },
      { username: "privatebot", logger },
    );
    await mallory.send("privatebot", "let me in");
    await logger.waitFor(new RegExp(`Ignored a message update from ${mallory.uuid}: not on the allowlist`));
    await alice.send("privatebot", "hi");
    assert.equal((await alice.nextMessage()).text, "hello, friend");
    await bot.idle();
    await mallory.expectNoMessage(300);
    assert.deepEqual(handled, [alice.uuid]);
    assert.match(logger.text(), /Trust: only the 1 allowlisted user\(s\) are answered/);
  });

  it("verifiedOnly: an allowlisted user is answered once the bot has verified their safety number", async () => {
    const logger = new MemoryLogger();
    const bot = await hs.bot((options) => echo({ ...options, trust: { allow: [alice.uuid], verifiedOnly: true } }), {
      username: "strictbot",
      logger,
    });
    await alice.send("strictbot", "before verifying");
    await logger.waitFor(/Ignored a message update from .*: not verified/);
    assert.equal(await bot.verify("alice", "0".repeat(60)), false);
    const number = await alice.client.safetyNumber("strictbot");
    assert.equal(await bot.verify("alice", number.grouped), true);
    await alice.send("strictbot", "after verifying");
    assert.equal((await alice.nextMessage()).text, "echo: after verifying");
  });

  it('onIdentityChange "accept": a changed key is reported and the conversation goes on, unverified', async () => {
    const carol = await hs.user("carol");
    const changes: IdentityChange[] = [];
    const bot = await hs.bot(
      (options) => {
        const b = echo({ ...options, onIdentityChange: "accept" });
        b.on("identity_changed", async (ctx) => {
          changes.push(ctx.identityChange);
          await ctx.reply("your safety number changed");
        });
        return b;
      },
      { username: "acceptbot" },
    );
    await carol.send("acceptbot", "hi");
    assert.equal((await carol.nextMessage()).text, "echo: hi");
    assert.ok(await bot.verify("carol", (await carol.client.safetyNumber("acceptbot")).digits));
    await carol.client.resetIdentity();
    await carol.send("acceptbot", "new phone");
    const first = await carol.nextMessage();
    const second = await carol.nextMessage();
    assert.deepEqual([first.text, second.text], ["your safety number changed", "echo: new phone"]);
    assert.deepEqual(changes, [{ uuid: carol.uuid, action: "accepted" }]);
    assert.deepEqual(await bot.client.trustState("carol"), { verified: false, blocked: false });
  });

  it('onIdentityChange "block": the user\'s messages are not dispatched until verified again', async () => {
    const dave = await hs.user("dave");
    const logger = new MemoryLogger();
    const changes: { change: IdentityChange; canReply: boolean }[] = [];
    const bot = await hs.bot(
      (options) => {
        const b = echo({ ...options, onIdentityChange: "block" });
        b.on(
          "identity_changed",
          (ctx) => void changes.push({ change: ctx.identityChange, canReply: ctx.chat !== undefined }),
        );
        return b;
      },
      { username: "blockbot", logger },
    );
    await dave.send("blockbot", "hi");
    assert.equal((await dave.nextMessage()).text, "echo: hi");
    await dave.client.resetIdentity();
    await dave.send("blockbot", "it is me, honest");
    await logger.waitFor(/Ignored a message update from .*: blocked after an identity key change/);
    await bot.idle();
    assert.deepEqual(changes, [{ change: { uuid: dave.uuid, action: "blocked" }, canReply: false }]);
    await dave.expectNoMessage(300);
    assert.equal(
      await bot.verify("dave", (await dave.client.safetyNumber("blockbot")).digits),
      true,
      "verified again, out of band",
    );
    await dave.send("blockbot", "verified now");
    assert.equal((await dave.nextMessage()).text, "echo: verified now");
  });

  it("decryption_failed reaches the bot's author with the reason, and the author can tell the sender", async () => {
    const failures: DecryptionFailure[] = [];
    const bot = await hs.bot(
      (options) => {
        const b = echo(options);
        b.on("decryption_failed", async (ctx) => {
          failures.push(ctx.failure);
          await ctx.reply("I could not read your last message; please send it again");
        });
        return b;
      },
      { username: "fragile" },
    );
    await alice.send("fragile", "hello");
    assert.equal((await alice.nextMessage()).text, "echo: hello");
    // An envelope the bot cannot decrypt: a well-formed Signal message under keys of no session (its MAC fails).
    const key = (): ReturnType<PrivateKey["getPublicKey"]> => PrivateKey.generate().getPublicKey();
    const bytes = (n: number): Uint8Array<ArrayBuffer> => new Uint8Array(randomBytes(n));
    const forged = SignalMessage._new(4, bytes(32), key(), 0, 0, bytes(48), key(), key(), new Uint8Array(0));
    const { devices } = await alice.client.api.preKeyBundle(bot.uuid, 1);
    await alice.client.api.sendMessages(bot.uuid, {
      messages: [
        {
          type: "whisper",
          destinationDeviceId: 1,
          destinationRegistrationId: devices[0]!.registrationId,
          content: Buffer.from(forged.serialize()).toString("base64"),
        },
      ],
    });
    assert.equal((await alice.nextMessage()).text, "I could not read your last message; please send it again");
    assert.equal(failures.length, 1);
    assert.equal(failures[0]!.from, alice.uuid);
    assert.equal(failures[0]!.reason, DecryptionFailureReason.InvalidMessage);
    await alice.send("fragile", "still friends?");
    assert.equal((await alice.nextMessage()).text, "echo: still friends?", "the session survived the bad envelope");
  });

  it("device_list_changed: a device linked to the bot's account reaches the author and is logged as a warning", async () => {
    const logger = new MemoryLogger();
    const changes: DeviceListChangedEvent[] = [];
    const bot = await hs.bot(
      (options) => {
        const b = echo(options);
        b.on("device_list_changed", (ctx) => void changes.push(ctx.devices));
        return b;
      },
      { username: "watchful", logger },
    );
    await bot.idle();
    assert.equal(changes.length, 0, "the bot's own first device is not news");
    let uri = "";
    const linking = ZimClient.link({
      serverUrl: hs.url,
      store: new MemoryDeviceStore(),
      onLinkCode: (link) => void (uri = link.uri),
    });
    while (!uri) await new Promise((r) => setTimeout(r, 20));
    await bot.client.approveLink(uri);
    const second = await linking;
    try {
      await second.connect();
      await logger.waitFor(/Device\(s\) 2 were linked to the bot's account/);
      await bot.idle();
      assert.deepEqual(
        changes.map((c) => c.added),
        [[2]],
      );
    } finally {
      await second.close();
    }
  });
});
