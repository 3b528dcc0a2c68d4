import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryLogger, testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";
import { createVerifyBot } from "../src/verify-bot.js";

describe("verify-bot", () => {
  let hs: TestHomeserver;
  let alice: TestUser;
  before(async () => {
    hs = await testHomeserver();
    alice = await hs.user("alice");
  });
  after(async () => hs?.close());

  it("shows the safety number, accepts the right one, refuses a wrong one, and reports the state", async () => {
    const logger = new MemoryLogger();
    const bot = await hs.bot(createVerifyBot, { logger });
    const mine = await alice.client.safetyNumber("verifybot");

    await alice.send("verifybot", "hello");
    assert.equal((await alice.nextMessage()).text, "Send /safety to start verifying, or /help.");
    await alice.send("verifybot", "/safety");
    const shown = (await alice.nextMessage()).text;
    assert.ok(shown.includes(mine.grouped), "the bot shows the number alice's app shows");
    assert.ok(
      logger.text().includes(`Safety number with ${alice.uuid}: ${mine.grouped}`),
      "and logs it for comparing out of band",
    );
    assert.ok(mine.digits.includes(bot.identityFingerprint().replace(/ /g, "")));

    await alice.send("verifybot", "/verified");
    assert.match((await alice.nextMessage()).text, /^You are not verified yet/);
    const wrong = mine.digits.slice(0, 59) + ((Number(mine.digits[59]) + 1) % 10);
    await alice.send("verifybot", `/verify ${wrong}`);
    assert.match((await alice.nextMessage()).text, /^That is not our safety number/);
    await alice.send("verifybot", "/verified");
    assert.match((await alice.nextMessage()).text, /^You are not verified yet/, "a wrong number verifies nothing");

    await alice.send("verifybot", `/verify ${mine.grouped}`);
    assert.match((await alice.nextMessage()).text, /^Verified: the numbers match/);
    await alice.send("verifybot", "/verified");
    assert.match((await alice.nextMessage()).text, /^You are verified/);
    assert.deepEqual(await bot.client.trustState("alice"), { verified: true, blocked: false });
  });

  it("tells a user whose safety number changed to verify again", async () => {
    const bob = await hs.user("bob");
    await hs.bot(createVerifyBot, { username: "verifybot2" });
    await bob.send("verifybot2", "/safety");
    await bob.nextMessage();
    await bob.client.resetIdentity();
    await bob.send("verifybot2", "/verified");
    assert.match((await bob.nextMessage()).text, /^Your safety number with me has changed/);
    assert.match((await bob.nextMessage()).text, /^You are not verified yet/);
  });
});
