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

  private readonly onRefused: (name: keyof RateLimits) => void;

  /**
   * @param options.store where the buckets live when several nodes share them (in memory otherwise)
   * @param options.onRefused told the limit's name on every refusal (metrics; never the key)
   */
  constructor(limits: RateLimits | false, options: { store?: RateLimitStore | undefined; onRefused?: ((name: keyof RateLimits) => void) | undefined } = {}) {
    const { store } = options;
    this.onRefused = options.onRefused ?? (() => {});
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
      if (!(error instanceof RateLimiterRes)) throw error;
      this.onRefused(name);
      throw rateLimited(error.msBeforeNext);
    }
  }
}
