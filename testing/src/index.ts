/**
 * @zimchat/testing: test against a real homeserver and real end-to-end
 * encrypted users in a few lines. The one home of ZimChat's test helpers:
 * its own tests, the bench, and bot authors' tests use it.
 *
 * - `testHomeserver()`: a homeserver in this process with scripted users
 *   ({@link TestUser}) and bots.
 * - `@zimchat/testing/spawn`: `zimchat serve` as a child process, and client
 *   devices on SQLite stores (loads no server code into the test process).
 * - `@zimchat/testing/signal`: libsignal's stores in memory, a wire-level
 *   test device, and reusable key and ciphertext fixtures (loads neither the
 *   server nor the client).
 * @example
 * const hs = await testHomeserver();
 * const alice = await hs.user("alice");
 * const bot = await hs.bot(createEchoBot);
 * await alice.send(bot.username, "hi");
 * assert.equal((await alice.nextMessage()).text, "hi");
 * await hs.close();
 * @packageDocumentation
 */
export {
  testHomeserver,
  type BotFactory,
  type StartableBot,
  type TestBotOptions,
  type TestHomeserver,
  type TestHomeserverOptions,
  type TestPlugins,
} from "./homeserver.js";
export { TestUser, type NextMessageOptions } from "./test-user.js";
export { MemoryLogger } from "@zimchat/plugin-sdk/bot";
export * from "./signal.js";
export * from "./spawn.js";
