import { writeSync } from "node:fs";

/**
 * When to try again after a failed write: soon for a full pipe (its reader drains it), later for a full disk or an I/O
 * error.
 */
const retryAfterMs = (code: string): number => (code === "EAGAIN" ? 20 : 1000);

/**
 * A pino destination that never blocks the event loop on a failing log and
 * never throws or emits `error`: a log line must not stop the server. Lines
 * are written synchronously (as pino's default destination does) while the
 * file descriptor takes them; when a write fails (ENOSPC on a full disk,
 * EAGAIN on a full pipe, EPIPE, EIO), lines wait in a bounded buffer and
 * the write is retried (20 ms later for a full pipe, a second later
 * otherwise); lines that do not fit are dropped
 * and counted ({@link SafeDestination.dropped}, `zimchat_log_lines_dropped_total`).
 * Once the destination takes lines again, the buffer is written and one
 * line says what failed and how many lines were dropped (after a full pipe
 * only if lines were dropped: the log reader cannot keep up).
 */
export class SafeDestination {
  /** Lines dropped so far because the destination failed and the buffer was full. */
  dropped = 0;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private failure: string | null = null;
  private droppedSinceFailure = 0;
  private retry: NodeJS.Timeout | null = null;

  /**
   * @param fd the file descriptor to write to (1: stdout)
   * @param maxBufferBytes log bytes kept while the destination fails
   */
  constructor(
    private readonly fd: number,
    private readonly maxBufferBytes = 1024 * 1024,
  ) {}

  /** Called by pino with one serialised line. */
  write(line: string): void {
    const bytes = Buffer.from(line);
    if (this.queuedBytes + bytes.length > this.maxBufferBytes) {
      this.dropped++;
      this.droppedSinceFailure++;
      return;
    }
    this.queue.push(bytes);
    this.queuedBytes += bytes.length;
    if (!this.retry) this.flush();
  }

  /** Stops retrying and forgets buffered lines (before the file descriptor is closed). */
  end(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private flush(): void {
    this.retry = null;
    while (this.queue.length) {
      const head = this.queue[0]!;
      let written: number;
      try {
        written = writeSync(this.fd, head);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? "error";
        // The notice names the worst failure of the episode (a full disk, not the full pipe after it).
        if (this.failure === null || this.failure === "EAGAIN") this.failure = code;
        this.retry = setTimeout(() => this.flush(), retryAfterMs(code));
        // A failing log must not keep a process alive that is otherwise done.
        this.retry.unref();
        return;
      }
      this.queuedBytes -= written;
      if (written >= head.length) this.queue.shift();
      else this.queue[0] = head.subarray(written);
    }
    // A full pipe that lost nothing is routine back-pressure: no notice for it.
    if (this.failure === "EAGAIN" && !this.droppedSinceFailure) this.failure = null;
    if (this.failure) {
      const dropped = this.droppedSinceFailure;
      const msg = `the log destination failed (${this.failure}); ${dropped} lines were dropped, the others were kept and written now`;
      const notice = { level: 40, time: Date.now(), service: "zimchat", failure: this.failure, dropped, msg };
      this.failure = null;
      this.droppedSinceFailure = 0;
      this.write(`${JSON.stringify(notice)}\n`);
    }
  }
}
