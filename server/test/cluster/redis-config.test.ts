import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, connectRedis, openHomeserver, resolveConfig } from "../../src/index.js";
import { startChildServer } from "../support/child-server.js";

describe("Redis configuration", () => {
  it("refuses REDIS_URL with a SQLite database", () => {
    assert.throws(
      () => resolveConfig({ dataDir: "/tmp/x", redisUrl: "redis://127.0.0.1:6379" }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /REDIS_URL.*SQLite/);
        return true;
      },
    );
  });

  it("refuses a Redis URL that is not redis:// and a bad prefix", () => {
    assert.throws(
      () => resolveConfig({ databaseUrl: "postgresql://x/y", redisUrl: "http://127.0.0.1" }),
      /REDIS_URL must start with redis:\/\//,
    );
    assert.throws(() => resolveConfig({ redisPrefix: "bad prefix" }), /ZIMCHAT_REDIS_PREFIX/);
  });

  it("defaults: no Redis, attachments under the data directory", () => {
    const config = resolveConfig({ dataDir: "/srv/zimchat" });
    assert.equal(config.redisUrl, undefined);
    assert.equal(config.redisPrefix, "zimchat");
    assert.equal(config.attachmentsDir, "/srv/zimchat/attachments");
    assert.equal(resolveConfig({ attachmentsDir: "/shared/blobs" }).attachmentsDir, "/shared/blobs");
  });

  it("fails start-up with a ConfigError naming REDIS_URL when Redis cannot be reached, without its password", async () => {
    await assert.rejects(connectRedis("redis://:hunter2secret@127.0.0.1:1", "zimchat", 2000), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1.*REDIS_URL/);
      assert.doesNotMatch(error.message, /hunter2secret/);
      return true;
    });
    const config = resolveConfig({
      dataDir: "/tmp/unused",
      databaseUrl: "postgresql://127.0.0.1:1/none",
      redisUrl: "redis://127.0.0.1:1",
      logLevel: "silent",
    });
    await assert.rejects(openHomeserver(config), ConfigError);
  });

  it("the zimchat command exits with the message when REDIS_URL is unreachable", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "zimchat-redis-"));
    try {
      await assert.rejects(
        startChildServer(["--data-dir", dataDir, "--database-url", "postgresql://127.0.0.1:1/none"], {
          REDIS_URL: "redis://127.0.0.1:1",
        }),
        /cannot reach Redis at redis:\/\/127\.0\.0\.1:1/,
      );
      await assert.rejects(
        startChildServer(["--data-dir", dataDir], { REDIS_URL: "redis://127.0.0.1:6379" }),
        /several nodes cannot share a SQLite file/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
