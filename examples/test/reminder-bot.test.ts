import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";
import { createReminderBot, parseDuration } from "../src/reminder-bot.js";

describe("reminder-bot", () => {
  let hs: TestHomeserver;
  let alice: TestUser;
  before(async () => {
    hs = await testHomeserver();
    alice = await hs.user("alice");
  });
  after(async () => hs?.close());

  it("parses durations in s, m, h and d", () => {
    assert.equal(parseDuration("30s"), 30_000);
    assert.equal(parseDuration("10m"), 600_000);
    assert.equal(parseDuration("2h"), 7_200_000);
    assert.equal(parseDuration("1d"), 86_400_000);
    for (const bad of ["", "10", "m", "0s", "1.5h", "10 m", "-1m", "400d"]) assert.equal(parseDuration(bad), null, bad);
  });

  it("/remind 1s tea fires; bad input gets the usage", async () => {
    await hs.bot(createReminderBot);
    await alice.send("reminderbot", "/remind soon tea");
    assert.match((await alice.nextMessage()).text, /^Usage: \/remind/);
    await alice.send("reminderbot", "/remind 1s tea");
    assert.equal((await alice.nextMessage()).text, "OK, I will remind you in 1s: tea");
    assert.equal((await alice.nextMessage({ timeoutMs: 5_000 })).text, "⏰ Reminder: tea");
    await alice.send("reminderbot", "/reminders");
    assert.equal((await alice.nextMessage()).text, "No pending reminders.", "a fired reminder is forgotten");
  });

  it("a reminder survives a restart of the bot and fires after it", async () => {
    const first = await hs.bot(createReminderBot, { username: "reminderbot2" });
    await alice.send("reminderbot2", "/remind 2s take the bread out");
    assert.equal((await alice.nextMessage()).text, "OK, I will remind you in 2s: take the bread out");
    await alice.send("reminderbot2", "/remind 1h call Gogo");
    await alice.nextMessage();
    await first.stop();
    // Down while the first one falls due: it fires once the bot is back.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await hs.bot(createReminderBot, { dir: first.dir });
    assert.equal((await alice.nextMessage({ timeoutMs: 8_000 })).text, "⏰ Reminder: take the bread out");
    await alice.send("reminderbot2", "/reminders");
    assert.match(
      (await alice.nextMessage()).text,
      /^\d{4}-\d\d-\d\dT[\d:.]+Z: call Gogo$/,
      "the other one is still pending",
    );
  });
});
