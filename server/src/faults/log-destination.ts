import { writeSync } from "node:fs";

/** Errors after which writing again later may work (disk full, a pipe that is full or gone, an I/O error). */
const retryAfterMs = 1000;

/**
 * A pino destination that never blocks the event loop on a failing log and
 * never throws or emits `error`: a log line must not stop the server. Lines
 * are written synchronously (as pino's default destination does) while the
 * file descriptor takes them; when a write fails (ENOSPC on a full disk,
 * EAGAIN on a full pipe, EPIPE, EIO), lines wait in a bounded buffer and
 * the write is retried a second later; lines that do not fit are dropped
 * and counted ({@link SafeDestination.dropped}, `zimchat_log_lines_dropped_total`).
 * Once the destination takes lines again, the buffer is written and one
 * line says how many were dropped.
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

  private flush(): void {
    this.retry = null;
    while (this.queue.length) {
      const head = this.queue[0]!;
      let written: number;
      try {
        written = writeSync(this.fd, head);
      } catch (error) {
        this.failure = (error as NodeJS.ErrnoException).code ?? "error";
        this.retry = setTimeout(() => this.flush(), retryAfterMs);
        // A failing log must not keep a process alive that is otherwise done.
        this.retry.unref();
        return;
      }
      this.queuedBytes -= written;
      if (written >= head.length) this.queue.shift();
      else this.queue[0] = head.subarray(written);
    }
    if (this.failure) {
      const notice = { level: 40, time: Date.now(), service: "zimchat", failure: this.failure, dropped: this.droppedSinceFailure, msg: "the log destination failed; lines were buffered and some dropped" };
      this.failure = null;
      this.droppedSinceFailure = 0;
      this.write(`${JSON.stringify(notice)}\n`);
    }
  }
}
