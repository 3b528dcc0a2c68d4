/**
 * @zimchat/examples: example bots, each a `create...Bot(options)` for tests and `main.ts` to run them.
 * @packageDocumentation
 */
export { createEchoBot } from "./echo-bot.js";
export {
  createReminderBot,
  parseDuration,
  type Reminder,
  type ReminderContext,
  type ReminderSession,
} from "./reminder-bot.js";
export { createVerifyBot } from "./verify-bot.js";
