/**
 * @zimchat/plugin-sdk/testing: test a bot in a few lines, against a real
 * homeserver in this process and real end-to-end encrypted users.
 * @example
 * const hs = await testHomeserver();
 * const alice = await hs.user("alice");
 * const bot = await hs.bot(createEchoBot);
 * await alice.send(bot.username, "hi");
 * assert.equal((await alice.nextMessage()).text, "hi");
 * await hs.close();
 * @packageDocumentation
 */
export { testHomeserver, type BotFactory, type StartableBot, type TestBotOptions, type TestHomeserver, type TestHomeserverOptions, type TestPlugins } from "./homeserver.js";
export { TestUser, type NextMessageOptions } from "./test-user.js";
export { MemoryLogger } from "../bot/index.js";
