/**
 * Several real `zimchat serve` processes sharing one PostgreSQL schema, one
 * Redis (under a prefix of their own) and one data directory, and a
 * round-robin TCP proxy in front of them, as a load balancer would be.
 */
import { randomBytes } from "node:crypto";
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { Redis } from "ioredis";
import { startChildServer, type ChildServer } from "./child-server.js";
import { freshDatabase, testProvider } from "./harness.js";

/** The Redis the cluster tests use. */
export const testRedisUrl = process.env.ZIMCHAT_TEST_REDIS_URL || "redis://127.0.0.1:6379";

/** Why the cluster tests are skipped, or false when they run (they need PostgreSQL). */
export const clusterSkip: string | false =
  testProvider === "postgresql"
    ? false
    : "needs PostgreSQL: several nodes cannot share a SQLite file (runs in the PostgreSQL run of scripts/test.mjs)";

/** A running cluster. */
export interface TestCluster {
  nodes: ChildServer[];
  databaseUrl: string;
  dataDir: string;
  redisPrefix: string;
  /** The arguments every node was started with. */
  args: string[];
  /** Kills what is still running, drops the schema and deletes the Redis keys under the prefix. */
  stop(): Promise<void>;
}

/**
 * Starts `count` nodes at once on a fresh PostgreSQL schema, one Redis
 * prefix and one data directory (so migrations and key creation race, as
 * they do when a cluster starts).
 */
export async function startCluster(count: number, extraArgs: string[] = []): Promise<TestCluster> {
  const db = freshDatabase();
  const redisPrefix = `zt_${randomBytes(6).toString("hex")}`;
  const args = [
    "--database-url",
    db.url,
    "--data-dir",
    db.dataDir,
    "--redis-url",
    testRedisUrl,
    "--redis-prefix",
    redisPrefix,
    "--registration",
    "open",
    "--log-level",
    "warn",
    ...extraArgs,
  ];
  const started = await Promise.allSettled(Array.from({ length: count }, () => startChildServer(args)));
  const nodes = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(
      nodes.map(async (node) => {
        if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill("SIGTERM");
        await node.exited;
      }),
    );
    await db.drop();
    await deleteRedisKeys(redisPrefix);
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { nodes, databaseUrl: db.url, dataDir: db.dataDir, redisPrefix, args, stop };
}

/** Deletes every Redis key under `prefix`. */
export async function deleteRedisKeys(prefix: string): Promise<void> {
  const redis = new Redis(testRedisUrl);
  try {
    for await (const keys of redis.scanStream({ match: `${prefix}:*`, count: 500 }) as AsyncIterable<string[]>) {
      if (keys.length) await redis.del(...keys);
    }
  } finally {
    redis.disconnect();
  }
}

/** A TCP proxy in front of several nodes. */
export interface RoundRobinProxy {
  url: string;
  close(): Promise<void>;
}

/**
 * A round-robin TCP proxy: each new connection goes to the next backend
 * that accepts it (a dead one is skipped), as a load balancer does.
 */
export async function startProxy(backendUrls: string[]): Promise<RoundRobinProxy> {
  const backends = backendUrls.map((u) => new URL(u));
  const open = new Set<Socket>();
  let next = 0;
  const server: Server = createServer((client) => {
    open.add(client);
    client.on("close", () => open.delete(client));
    client.pause();
    const attempt = (tries: number): void => {
      if (tries >= backends.length) {
        client.destroy();
        return;
      }
      const target = backends[next++ % backends.length]!;
      const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
      let connected = false;
      upstream.on("error", () => {
        upstream.destroy();
        // Refused: that backend is down, try the next one; after connecting: the backend died, drop the client.
        if (connected) client.destroy();
        else attempt(tries + 1);
      });
      upstream.once("connect", () => {
        connected = true;
        open.add(upstream);
        upstream.on("close", () => (open.delete(upstream), client.destroy()));
        client.on("error", () => upstream.destroy());
        client.on("close", () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
