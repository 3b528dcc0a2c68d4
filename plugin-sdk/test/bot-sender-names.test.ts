import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Bot } from "../src/bot/index.js";
import { testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";

describe("bots see who wrote by verified username", () => {
  let hs: TestHomeserver;
  let alice: TestUser;
  before(async () => {
    hs = await testHomeserver();
    alice = await hs.user("alice");
  });
  after(async () => hs?.close());

  it("ctx.fromUsername names a first-time sender the bot never looked up", async () => {
    await hs.bot(
      (options) => {
        const b = new Bot(options);
        b.on("text", (ctx) =>
          ctx.reply(
            `hello ${ctx.fromUsername ?? "stranger"} (${ctx.message.senderName?.verified ? "verified" : "unverified"})`,
          ),
        );
        return b;
      },
      { username: "namebot" },
    );
    await alice.send("namebot", "hi");
    assert.equal((await alice.nextMessage()).text, "hello alice (verified)");
  });
});
