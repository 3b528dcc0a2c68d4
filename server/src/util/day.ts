import { limits } from "@zimchat/protocol";

/** Milliseconds in a day. */
export const dayMs = 86_400_000;

/** Days since the Unix epoch (UTC) of a time: the granularity ZimChat keeps "last seen" at. */
export function dayNumber(ms: number = Date.now()): number {
  return Math.floor(ms / dayMs);
}

/**
 * Server timestamps are stored and served rounded down to the protocol's granularity (one upload's envelopes share no
 * telling millisecond).
 */
export function coarseTimestamp(ms: number): number {
  return ms - (ms % limits.serverTimestampGranularityMs);
}

/**
 * When something accepted at `acceptedAt` expires after `ttlMs`, as stored:
 * coarse like server timestamps, unless the TTL is shorter than the
 * granularity (tests), where rounding down could expire it at once.
 */
export function coarseExpiry(acceptedAt: number, ttlMs: number): number {
  return ttlMs >= limits.serverTimestampGranularityMs ? coarseTimestamp(acceptedAt + ttlMs) : acceptedAt + ttlMs;
}

/** Midnight UTC of the day a time falls on: the granularity account and device creation times are kept at. */
export function startOfDay(ms: number = Date.now()): Date {
  return new Date(dayNumber(ms) * dayMs);
}

/**
 * The devices already recorded as seen on the current day, so recording a
 * device's last-seen day writes at most once per device per day per process.
 * Forgets everything when the day changes, so it holds at most one day's
 * active devices.
 */
export class SeenToday {
  private day = -1;
  private readonly seen = new Set<string>();

  /** Marks `key` as seen on `day`; true when it had not been on that day (the caller should write). */
  mark(key: string, day: number): boolean {
    if (day !== this.day) {
      this.day = day;
      this.seen.clear();
    }
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }

  /** Forgets `key` (a failed write is retried on the next authentication). */
  forget(key: string): void {
    this.seen.delete(key);
  }
}
