/**
 * Walks a user through safety-number verification. `/safety` shows the
 * number the bot computes with libsignal for the two of you (the bot also
 * logs it, for comparing out of band); the user compares it with what their
 * app shows (`zimchat-chat safety-number verifybot`), then sends
 * `/verify <60 digits>`, and the bot marks the user verified if they match.
 *
 * Typing the number into the chat only shows that both ends compute the
 * same number; reading it aloud, or comparing it with the number in the
 * bot's log or on its operator's web page, is what rules out a key swapped
 * in between.
 */
import { Bot, type BotOptions } from "@zimchat/plugin-sdk/bot";

/** Builds the verify bot (username "verifybot" unless given); `start()` it. */
export function createVerifyBot(options: BotOptions): Bot {
  const bot = new Bot({ username: "verifybot", description: "I help you verify our safety number.", ...options });

  bot.command("safety", "show our safety number", async (ctx) => {
    const number = await ctx.safetyNumber();
    bot.logger.info(`Safety number with ${ctx.from}: ${number.grouped}`);
    await ctx.reply(
      `Our safety number:\n${number.grouped}\n\n` +
        `Compare it with the one your app shows for ${bot.username} (zimchat-chat safety-number ${bot.username}). ` +
        `If they are the same, send /verify followed by the 60 digits.`,
    );
  });
  bot.command("verify", "/verify <60 digits>: check the number your app shows", async (ctx) => {
    if (!ctx.match) return ctx.reply("Send /verify followed by the 60 digits your app shows.");
    if (!(await ctx.verify(ctx.match))) {
      return ctx.reply(
        "That is not our safety number. Check that you copied it from our conversation; if it really differs, someone may be in between: do not trust this chat.",
      );
    }
    return ctx.reply(
      `Verified: the numbers match. Mark me verified on your side too: zimchat-chat verify ${bot.username} <the same digits>`,
    );
  });
  bot.command("verified", "are you verified?", async (ctx) =>
    ctx.reply(
      (await ctx.isVerified())
        ? "You are verified: I have checked our safety number with you."
        : "You are not verified yet: send /safety to start.",
    ),
  );
  bot.on("identity_changed", async (ctx) => {
    if (ctx.chat)
      await ctx.reply(
        "Your safety number with me has changed (a new device or a reinstall?). Send /safety to verify it again.",
      );
  });
  bot.on("message", (ctx) => ctx.reply("Send /safety to start verifying, or /help."));
  return bot;
}
