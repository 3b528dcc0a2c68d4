import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import type { RateLimits } from "../config.js";
import { rateLimited } from "../errors.js";

/**
 * The homeserver's rate limits, in memory on one node (rate-limiter-flexible;
 * the Redis store comes with several nodes). Keys are account ids or, for
 * registration, the client address: kept in memory for the window, never
 * logged or stored.
 */
export class RateLimiter {
  private readonly limiters: Map<keyof RateLimits, RateLimiterMemory>;

  /** @param onRefused told the limit's name on every refusal (metrics; never the key) */
  constructor(
    limits: RateLimits | false,
    private readonly onRefused: (name: keyof RateLimits) => void = () => {},
  ) {
    this.limiters = new Map(
      limits
        ? (Object.entries(limits) as [keyof RateLimits, RateLimits[keyof RateLimits]][]).map(([name, limit]) => [
            name,
            new RateLimiterMemory({ keyPrefix: name, points: limit.points, duration: limit.durationSeconds }),
          ])
        : [],
    );
  }

  /**
   * Takes one point from `name`'s bucket for `key`.
   * @throws HttpError `rate_limited` with Retry-After when the bucket is empty
   */
  async consume(name: keyof RateLimits, key: string): Promise<void> {
    const limiter = this.limiters.get(name);
    if (!limiter) return;
    try {
      await limiter.consume(key);
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      this.onRefused(name);
      throw rateLimited(error.msBeforeNext);
    }
  }
}
