import { ApiError } from "../index.js";
import { toCliError } from "./cli-error.js";

/** What {@link LineOutbox} needs from the chat. */
export interface LineOutboxOptions {
  /** Lines queued by an earlier chat (from the profile), oldest first. */
  pending: string[];
  /** Stores the queued lines (the profile's outbox.json), after every change. */
  persist(lines: string[]): void;
  /** Sends one line and reports it; `queued` when it had been queued. */
  send(text: string, queued: boolean): Promise<void>;
  /** A line could not be sent now: it is queued (`pending` lines wait). */
  queued(text: string, pending: number, error: unknown): void;
  /** A line failed for good (the server refused it): it is dropped from the queue. */
  failed(text: string, error: unknown): void;
  /** Waits between retries: the first, doubling up to the last. @default { first: 1000, max: 15000 } */
  retryMs?: { first: number; max: number };
}

/**
 * Whether a send failed without an answer from the homeserver (down,
 * unreachable, or a proxy in front of it failing), so the same line is worth
 * sending again later. A refusal (4xx) is an answer: it is reported, not retried.
 */
export function isTransientSendFailure(error: unknown): boolean {
  if (error instanceof ApiError) return error.status === 502 || error.status === 503 || error.status === 504;
  if (toCliError(error).code === "unreachable") return true;
  const message = error instanceof Error ? error.message : "";
  // socket.io-client: an ack lost with the connection, or none in time.
  return message === "socket has been disconnected" || message === "operation has timed out";
}

/**
 * The lines a chat sends, in the order typed: a line that cannot be sent
 * because the homeserver is unreachable is queued (and every later line
 * behind it, so the order holds), kept in the profile, and sent when a retry
 * gets through. One line is handled at a time.
 */
export class LineOutbox {
  private readonly lines: { text: string; queued: boolean }[];
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private delay: number;
  private closed = false;

  constructor(private readonly options: LineOutboxOptions) {
    this.lines = options.pending.map((text) => ({ text, queued: true }));
    this.delay = this.retry.first;
  }

  private get retry(): { first: number; max: number } {
    return this.options.retryMs ?? { first: 1000, max: 15_000 };
  }

  /** How many lines wait. */
  get size(): number {
    return this.lines.length;
  }

  /** Sends what an earlier chat queued. */
  resume(): Promise<void> {
    return this.serial(() => this.flush());
  }

  /** Sends `text` after every line queued before it, or queues it. */
  submit(text: string): Promise<void> {
    return this.serial(async () => {
      this.lines.push({ text, queued: false });
      await this.flush();
    });
  }

  /** One last try, then stops retrying. @returns how many lines are still queued (they stay in the profile) */
  async close(): Promise<number> {
    await this.serial(async () => {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.closed = true;
      if (this.lines.length) await this.flush();
    });
    return this.lines.length;
  }

  private serial(task: () => Promise<void>): Promise<void> {
    const run = this.chain.then(task);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private persist(): void {
    this.options.persist(this.lines.filter((l) => l.queued).map((l) => l.text));
  }

  private async flush(): Promise<void> {
    while (this.lines.length) {
      const head = this.lines[0]!;
      try {
        await this.options.send(head.text, head.queued);
      } catch (error) {
        if (isTransientSendFailure(error)) {
          const fresh = this.lines.filter((l) => !l.queued);
          for (const line of fresh) line.queued = true;
          if (fresh.length) this.persist();
          for (const line of fresh) this.options.queued(line.text, this.lines.length, error);
          this.schedule();
          return;
        }
        this.lines.shift();
        if (head.queued) this.persist();
        this.options.failed(head.text, error);
        continue;
      }
      this.lines.shift();
      if (head.queued) this.persist();
      this.delay = this.retry.first;
    }
  }

  private schedule(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.serial(() => this.flush());
    }, this.delay);
    this.delay = Math.min(this.delay * 2, this.retry.max);
  }
}
