import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import type { RateLimits } from "../config.js";
import { rateLimited } from "../errors.js";

/** Where the buckets live when several nodes share them. */
export interface RateLimitStore {
  redis: Redis;
  /** Key prefix (the configured `redisPrefix`). */
  prefix: string;
}

/**
 * The homeserver's rate limits (rate-limiter-flexible): in memory on one
 * node, in Redis (`<prefix>:rl:<name>:<key>`) when several nodes share the
 * buckets. Keys are account ids or, for registration, the client address:
 * kept for the window only, never logged.
 */
export class RateLimiter {
  private readonly limiters: Map<keyof RateLimits, RateLimiterAbstract>;

  constructor(limits: RateLimits | false, store?: RateLimitStore) {
    this.limiters = new Map(
      limits
        ? (Object.entries(limits) as [keyof RateLimits, RateLimits[keyof RateLimits]][]).map(([name, limit]) => [
            name,
            store
              ? new RateLimiterRedis({ storeClient: store.redis, keyPrefix: `${store.prefix}:rl:${name}`, points: limit.points, duration: limit.durationSeconds })
              : new RateLimiterMemory({ keyPrefix: name, points: limit.points, duration: limit.durationSeconds }),
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
      if (error instanceof RateLimiterRes) throw rateLimited(error.msBeforeNext);
      throw error;
    }
  }
}
