import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { definePlugin } from "@zimchat/plugin-sdk/server";
import { Bot } from "@zimchat/plugin-sdk/bot";
import { testHomeserver, type TestHomeserver } from "../src/index.js";

describe("@zimchat/testing", () => {
  const registered: string[] = [];
  const audit = definePlugin({
    name: "bot-audit",
    configSchema: z.object({ prefix: z.string() }),
    setup: (_ctx, config) => ({ accountRegistered: (e) => void registered.push(`${config.prefix}${e.username}`) }),
  });
  let hs: TestHomeserver;
  before(async () => {
    hs = await testHomeserver({ registration: "invite", plugins: [{ use: audit, config: { prefix: "new:" } }] });
  });
  after(async () => hs?.close());

  it("passes server plugins through to the homeserver", async () => {
    await hs.user("alice");
    await hs.bot((options) => new Bot(options), { username: "auditedbot" });
    assert.deepEqual(registered, ["new:alice", "new:auditedbot"]);
  });

  it("registers by invite, and nextMessage / expectNoMessage time out with clear messages", async () => {
    const bob = await hs.user("bob");
    const carol = await hs.user("carol");
    await assert.rejects(
      bob.nextMessage({ timeoutMs: 200 }),
      /^Error: bob received no message within 200 ms \(0 other\(s\) queued\)$/,
    );
    await carol.send("bob", "one");
    await carol.send("bob", "two");
    const first = await bob.nextMessage();
    assert.equal(first.text, "one");
    assert.equal((await bob.nextMessage({ conversation: carol.uuid })).text, "two");
    await carol.send("bob", "three");
    await bob.nextMessage();
    await bob.expectNoMessage(100);
    await carol.send("bob", "four");
    await assert.rejects(bob.expectNoMessage(1_000), /^Error: bob received 1 message\(s\) it should not have$/);
  });
});
