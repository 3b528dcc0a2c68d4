import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Bot } from "../src/bot/index.js";
import { freePort, testHomeserver, type TestHomeserver } from "@zimchat/testing";

/** An in-process homeserver named after its own loopback address, federating with loopback peers. */
async function federated(): Promise<TestHomeserver & { name: string }> {
  const port = await freePort();
  const name = `127.0.0.1:${port}`;
  const hs = await testHomeserver({
    config: { port, serverName: name, federation: "open", federationInsecurePeers: true },
  });
  return Object.assign(hs, { name });
}

describe("bots across homeservers (name@server)", () => {
  let club: TestHomeserver & { name: string };
  let news: TestHomeserver & { name: string };
  before(async () => {
    [club, news] = await Promise.all([federated(), federated()]);
  });
  after(async () => {
    await Promise.all([club?.close(), news?.close()]);
  });

  it("a user of another server talks to a bot as to a local one; the allowlist takes name@server", async () => {
    const alice = await club.user("alice");
    const aliceAddress = `alice@${club.name}`;
    const bot = await news.bot(
      (options) => {
        const b = new Bot({ ...options, trust: { allow: [aliceAddress] } });
        b.command("hello", "greets", (ctx) =>
          ctx.reply(`hello ${ctx.fromUsername ?? "stranger"} of ${ctx.fromServer ?? "this server"}`),
        );
        return b;
      },
      { username: "greeter" },
    );
    await alice.send(`greeter@${news.name}`, "/hello");
    const reply = await alice.nextMessage();
    assert.equal(reply.text, `hello ${aliceAddress} of ${club.name}`);
    assert.equal(reply.fromServer, news.name);
    assert.equal(reply.senderName?.username, `greeter@${news.name}`);
    assert.equal(reply.senderName?.verified, true);

    // Outside a handler, by name@server too.
    await bot.sendText(aliceAddress, "a notice from news");
    assert.equal((await alice.nextMessage()).text, "a notice from news");
  });
});
