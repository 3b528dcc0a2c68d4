import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import type { RateLimits } from "../config.js";
import { HttpError, rateLimited } from "../errors.js";

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
  constructor(
    limits: RateLimits | false,
    options: { store?: RateLimitStore | undefined; onRefused?: ((name: keyof RateLimits) => void) | undefined } = {},
  ) {
    const { store } = options;
    this.onRefused = options.onRefused ?? (() => {});
    this.limiters = new Map(
      limits
        ? (Object.entries(limits) as [keyof RateLimits, RateLimits[keyof RateLimits]][]).map(([name, limit]) => [
            name,
            store
              ? new RateLimiterRedis({
                  storeClient: store.redis,
                  keyPrefix: `${store.prefix}:rl:${name}`,
                  points: limit.points,
                  duration: limit.durationSeconds,
                })
              : new RateLimiterMemory({ keyPrefix: name, points: limit.points, duration: limit.durationSeconds }),
          ])
        : [],
    );
  }

  /**
   * Takes `points` (one by default) from `name`'s bucket for `key`.
   * @throws HttpError `rate_limited` with Retry-After when the bucket is empty
   */
  async consume(name: keyof RateLimits, key: string, points = 1): Promise<void> {
    const limiter = this.limiters.get(name);
    if (!limiter) return;
    try {
      await limiter.consume(key, points);
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      this.onRefused(name);
      throw rateLimited(error.msBeforeNext);
    }
  }

  /**
   * Takes `points` from `name`'s bucket for `key` when it holds that many.
   * For budgets that degrade an answer instead of refusing it.
   * @returns false (counted as a refusal) when the bucket is empty
   */
  async tryConsume(name: keyof RateLimits, key: string, points = 1): Promise<boolean> {
    const limiter = this.limiters.get(name);
    if (!limiter) return true;
    try {
      await limiter.consume(key, points);
      return true;
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      this.onRefused(name);
      return false;
    }
  }

  /**
   * Whether `name`'s bucket for `key` is empty, without taking from it: for
   * limits that count only failures ({@link penalize}) but refuse up front.
   * @throws HttpError `code` (429, Retry-After) when it is empty
   */
  async check(
    name: keyof RateLimits,
    key: string,
    code: "rate_limited" | "too_many_failed_logins" = "rate_limited",
  ): Promise<void> {
    const limiter = this.limiters.get(name);
    if (!limiter) return;
    const state = await limiter.get(key);
    if (!state || state.consumedPoints < limiter.points) return;
    this.onRefused(name);
    const refusal = rateLimited(state.msBeforeNext);
    throw code === "rate_limited"
      ? refusal
      : new HttpError(
          code,
          "Too many failed attempts from this address; try again later",
          refusal.details,
          refusal.headers,
        );
  }

  /** Takes one point from `name`'s bucket for `key` without ever refusing (a failure to count). */
  async penalize(name: keyof RateLimits, key: string): Promise<void> {
    await this.limiters.get(name)?.penalty(key, 1);
  }

  /** Whether `name`'s bucket for `key` is empty now (read only). */
  async exhausted(name: keyof RateLimits, key: string): Promise<boolean> {
    const limiter = this.limiters.get(name);
    if (!limiter) return false;
    const state = await limiter.get(key);
    return !!state && state.consumedPoints >= limiter.points;
  }
}
