import type { BotLogger } from "./logger.js";

/** What the signal handling needs of a bot. */
interface StoppableBot {
  stop(): Promise<void>;
  readonly logger: BotLogger;
  readonly username: string;
}

const handled = ["SIGINT", "SIGTERM"] as const;
/** The bots that stop on SIGINT/SIGTERM; the handlers are installed while there is one. */
const running = new Set<StoppableBot>();

function onSignal(signal: NodeJS.Signals): void {
  const bots = [...running];
  for (const bot of bots)
    bot.logger.info(
      `${signal}: stopping @${bot.username} (finishing the updates in hand; ${signal} again ends the process at once).`,
    );
  // Each stop() takes its bot out of `running`: with the last one the handlers go, so a second signal ends the process
  // as Node does by default.
  void Promise.allSettled(bots.map((bot) => bot.stop())).then((results) =>
    process.exit(results.some((r) => r.status === "rejected") ? 1 : 0),
  );
}

/** Stops `bot` (and every other bot so registered), then exits the process, on SIGINT or SIGTERM. */
export function stopOnSignals(bot: StoppableBot): void {
  if (!running.size) for (const signal of handled) process.on(signal, onSignal);
  running.add(bot);
}

/** Undoes {@link stopOnSignals} for `bot` (the handlers go with the last bot). */
export function releaseSignals(bot: StoppableBot): void {
  if (!running.delete(bot) || running.size) return;
  for (const signal of handled) process.off(signal, onSignal);
}
