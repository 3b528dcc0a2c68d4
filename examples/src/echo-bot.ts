/**
 * The smallest useful bot: it answers every message with the same text (and
 * every file with the same file), end to end encrypted by its own device.
 */
import { Bot, type BotOptions } from "@zimchat/plugin-sdk/bot";

/** Builds the echo bot (username "echobot" unless given); `start()` it. */
export function createEchoBot(options: BotOptions): Bot {
  const bot = new Bot({ username: "echobot", description: "I send back whatever you send me.", ...options });
  bot.on("message", async (ctx) => {
    if (!ctx.message.attachment) return ctx.reply(ctx.message.text);
    // Decrypted here, encrypted again with a fresh key for the way back.
    const bytes = await ctx.downloadAttachment();
    return ctx.replyWithFile(bytes, { caption: ctx.message.text, fileName: ctx.message.attachment.fileName ?? "file" });
  });
  return bot;
}
