import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";
import { createEchoBot } from "../src/echo-bot.js";

describe("echo-bot", () => {
  let hs: TestHomeserver;
  let alice: TestUser;
  before(async () => {
    hs = await testHomeserver({ registration: "invite" });
    alice = await hs.user("alice");
  });
  after(async () => hs?.close());

  it("replies to every message with the same text, and to a file with the same file", async () => {
    const bot = await hs.bot(createEchoBot);
    assert.equal(bot.username, "echobot");
    await alice.send("echobot", "hi");
    assert.equal((await alice.nextMessage()).text, "hi");
    await alice.send("echobot", "Hey, did you see the news about the bond notes?");
    const reply = await alice.nextMessage();
    assert.equal(reply.text, "Hey, did you see the news about the bond notes?");
    assert.equal(reply.from, bot.uuid);

    await alice.sendFile("echobot", Buffer.from("braai at six"), { fileName: "plan.txt", caption: "the plan" });
    const file = await alice.nextMessage();
    assert.equal(file.text, "the plan");
    assert.equal(file.attachment?.fileName, "plan.txt");
    assert.equal((await alice.client.downloadAttachment(file.attachment!)).toString(), "braai at six");

    await alice.send("echobot", "/help");
    assert.equal((await alice.nextMessage()).text, "I send back whatever you send me.\n\nCommands:\n/help - this list");
  });
});
