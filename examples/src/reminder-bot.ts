/**
 * `/remind 10m tea`: a reminder in ten minutes. Reminders live in the
 * conversation's session, stored in SQLite next to the bot's keys, so they
 * survive a restart and fire after it (late ones as soon as the bot is back).
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import {
  Bot,
  SqliteSessionStorage,
  session,
  type BotOptions,
  type Context,
  type SessionFlavor,
} from "@zimchat/plugin-sdk/bot";

/** One pending reminder. */
export interface Reminder {
  id: string;
  /** When it is due (ms since the epoch). */
  due: number;
  text: string;
}

/** What the bot keeps per conversation. */
export interface ReminderSession {
  reminders: Reminder[];
}

/** The reminder bot's context: a context with a session. */
export type ReminderContext = Context & SessionFlavor<ReminderSession>;

const units: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30s`, `10m`, `2h`, `1d` in ms (up to a year), or null. */
export function parseDuration(text: string): number | null {
  const match = /^(\d{1,6})([smhd])$/.exec(text);
  const ms = match ? Number(match[1]) * units[match[2]!]! : NaN;
  return ms > 0 && ms <= 365 * units.d! ? ms : null;
}

/** Builds the reminder bot (username "reminderbot" unless given); `start()` it. */
export function createReminderBot(options: BotOptions): Bot<ReminderContext> {
  const bot = new Bot<ReminderContext>({
    username: "reminderbot",
    description: "I remind you of things, at the time you say.",
    ...options,
  });
  const storage = new SqliteSessionStorage<ReminderSession>(join(bot.dir, "sessions.db"));
  const sessions = session<ReminderSession, ReminderContext>({ initial: () => ({ reminders: [] }), storage });
  const timers = new Map<string, NodeJS.Timeout>();

  // Sends a due reminder, then forgets it (a crash in between sends it twice rather than never).
  const fire = async (chat: string, reminder: Reminder): Promise<void> => {
    timers.delete(reminder.id);
    if (reminder.due > Date.now()) return arm(chat, reminder); // timers cap at ~24 days
    try {
      await bot.sendText(chat, `⏰ Reminder: ${reminder.text}`);
      await sessions.update(chat, (s) => void (s.reminders = s.reminders.filter((r) => r.id !== reminder.id)));
    } catch (error) {
      bot.logger.error("A reminder could not be sent; it stays stored and is tried again at the next start", error);
    }
  };
  const arm = (chat: string, reminder: Reminder): void => {
    if (timers.has(reminder.id)) return;
    const delay = Math.min(Math.max(0, reminder.due - Date.now()), 2 ** 31 - 1);
    timers.set(
      reminder.id,
      setTimeout(() => void fire(chat, reminder), delay),
    );
  };

  bot.use(sessions);
  bot.command("remind", "/remind 10m tea: remind you in 10 minutes (s, m, h, d)", async (ctx) => {
    const [when, ...words] = ctx.args;
    const ms = when ? parseDuration(when) : null;
    if (!ms || !words.length) return ctx.reply("Usage: /remind <number><s|m|h|d> <what>, e.g. /remind 10m tea");
    const reminder: Reminder = { id: randomUUID(), due: Date.now() + ms, text: words.join(" ") };
    ctx.session.reminders.push(reminder);
    arm(ctx.chat.id, reminder);
    return ctx.reply(`OK, I will remind you in ${when}: ${reminder.text}`);
  });
  bot.command("reminders", "list your pending reminders", async (ctx) => {
    const pending = ctx.session.reminders;
    if (!pending.length) return ctx.reply("No pending reminders.");
    return ctx.reply(pending.map((r) => `${new Date(r.due).toISOString()}: ${r.text}`).join("\n"));
  });

  // After a restart: arm every stored reminder (overdue ones fire now).
  bot.onStart(async () => {
    for (const chat of await sessions.keys())
      for (const r of (await sessions.read(chat))?.reminders ?? []) arm(chat, r);
  });
  bot.onStop(() => {
    for (const timer of timers.values()) clearTimeout(timer);
    timers.clear();
    storage.close();
  });
  return bot;
}
