import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { ConfigError } from "../config.js";

/**
 * This node's connections to the cluster's Redis: one for commands (rate
 * limits, job locks, Socket.IO publishes) and one in subscriber mode (the
 * Socket.IO adapter's channels). Every key and channel starts with `prefix`.
 */
export interface ClusterRedis {
  /** Commands and publishes. */
  client: Redis;
  /** Subscriptions only (a subscribed connection cannot run commands). */
  subscriber: Redis;
  /** The configured `redisPrefix`. */
  prefix: string;
  /** Closes both connections. */
  close(): Promise<void>;
}

/**
 * Connects to Redis and checks it answers, so an unreachable Redis stops
 * start-up instead of failing the first request.
 * @throws ConfigError naming REDIS_URL when Redis cannot be reached
 * @example
 * const redis = await connectRedis("redis://127.0.0.1:6379", "zimchat");
 * await redis.close();
 */
export async function connectRedis(url: string, prefix: string, connectTimeoutMs = 5000): Promise<ClusterRedis> {
  const open = async (): Promise<Redis> => {
    // No retries while connecting: start-up either reaches Redis or says why not.
    let connected = false;
    const redis = new Redis(url, {
      lazyConnect: true,
      connectTimeout: connectTimeoutMs,
      retryStrategy: (times) => (connected ? Math.min(times * 100, 2000) : null),
    });
    // ioredis reports connection errors as events too; without a listener they would crash the process.
    redis.on("error", () => undefined);
    await redis.connect();
    await redis.ping();
    connected = true;
    return redis;
  };
  let client: Redis | undefined;
  try {
    client = await open();
    const subscriber = await open();
    return {
      client,
      subscriber,
      prefix,
      async close() {
        await Promise.allSettled([client!.quit(), subscriber.quit()]);
      },
    };
  } catch (error) {
    client?.disconnect();
    const where = safeRedisLocation(url);
    throw new ConfigError(
      `cannot reach Redis at ${where}: ${(error as Error).message} (check REDIS_URL / --redis-url, or unset it for a single node)`,
      { cause: error },
    );
  }
}

/** `host:port` of a Redis URL, without its password (which must not reach logs). */
function safeRedisLocation(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}`;
  } catch {
    return "an unparsable URL";
  }
}

// Deletes the key only if it still holds this holder's token (a lock that expired and was taken by another node stays).
const releaseScript = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;

/**
 * Cluster-wide locks for background jobs (SET NX PX with a random token):
 * of all the nodes that try a job in one period, one runs it.
 */
export class JobLocks {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /**
   * Runs `job` if no node ran `name` in the last `periodMs`. The lock is not
   * released when the job ends early, so nodes whose timers fire later in
   * the same period skip it; it is released only when the job fails, so
   * another node may retry.
   * @returns whether this node ran the job
   */
  async runOncePerPeriod(name: string, periodMs: number, job: () => Promise<void>): Promise<boolean> {
    const key = `${this.prefix}:lock:${name}`;
    const token = randomUUID();
    // Slightly shorter than the period, so the next tick (timer jitter) finds the lock expired.
    const ttl = Math.max(1, Math.floor(periodMs * 0.9));
    const taken = await this.redis.set(key, token, "PX", ttl, "NX");
    if (taken !== "OK") return false;
    try {
      await job();
    } catch (error) {
      await this.redis.eval(releaseScript, 1, key, token);
      throw error;
    }
    return true;
  }

  /**
   * Runs `job` while holding `name` (no other node holds it meanwhile), then
   * releases it. The lease expires after `leaseMs` should this node die
   * holding it; a job must end well within its lease.
   * @returns whether this node ran the job (false: another node holds it)
   */
  async runExclusive(name: string, leaseMs: number, job: () => Promise<void>): Promise<boolean> {
    const key = `${this.prefix}:lock:${name}`;
    const token = randomUUID();
    const taken = await this.redis.set(key, token, "PX", leaseMs, "NX");
    if (taken !== "OK") return false;
    try {
      await job();
    } finally {
      await this.redis.eval(releaseScript, 1, key, token);
    }
    return true;
  }
}
