/** The bot framework refuses a plain-http homeserver that is not on this machine, before any request (TLS). */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bot, BotConfigError } from "../src/bot/index.js";

describe("bot server URL", () => {
  it("a non-loopback http:// server is a BotConfigError naming the fix; nothing is registered", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "zimchat-bot-insecure-")), "bot");
    const bot = new Bot({ dir, server: "http://192.0.2.1:8080", username: "echobot", logger: false });
    await assert.rejects(
      bot.start(),
      (error: unknown) =>
        error instanceof BotConfigError && /https:\/\//.test(error.message) && /allowInsecureHttp/.test(error.message),
    );
    assert.equal(existsSync(join(dir, "bot.json")), false);
  });
});
