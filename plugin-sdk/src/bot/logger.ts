/**
 * Where a bot writes what it does. The bot never passes message text,
 * tokens or keys to it: lines name updates by kind and people by account id.
 */
export interface BotLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string, error?: unknown): void;
}

/** Logs to the console (the default). */
export const consoleLogger: BotLogger = {
  info: (message) => console.log(message),
  warn: (message) => console.warn(message),
  error: (message, error) => (error === undefined ? console.error(message) : console.error(message, error)),
};

/** Logs nothing. */
export const silentLogger: BotLogger = { info: () => {}, warn: () => {}, error: () => {} };

/** One line a {@link MemoryLogger} kept. */
export interface LogLine {
  level: "info" | "warn" | "error";
  message: string;
  error?: unknown;
}

/**
 * Keeps every line in memory (tests), and can wait for one.
 * @example
 * const logger = new MemoryLogger();
 * const bot = new Bot({ dir, logger });
 * await logger.waitFor(/not on the allowlist/);
 */
export class MemoryLogger implements BotLogger {
  readonly lines: LogLine[] = [];
  private readonly waiters = new Set<() => void>();

  info(message: string): void {
    this.push({ level: "info", message });
  }
  warn(message: string): void {
    this.push({ level: "warn", message });
  }
  error(message: string, error?: unknown): void {
    this.push({ level: "error", message, ...(error === undefined ? {} : { error }) });
  }

  /** The whole log as text, one line per entry. */
  text(): string {
    return this.lines.map((l) => l.message).join("\n");
  }

  /** Resolves with the first line (logged before or after the call) that matches, or rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const line = this.lines.find((l) => pattern.test(l.message));
        if (!line) return false;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        resolve(line);
        return true;
      };
      const waiter = (): void => void check();
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms; the log:\n${this.text()}`));
      }, timeoutMs);
      if (!check()) this.waiters.add(waiter);
    });
  }

  private push(line: LogLine): void {
    this.lines.push(line);
    for (const waiter of [...this.waiters]) waiter();
  }
}
