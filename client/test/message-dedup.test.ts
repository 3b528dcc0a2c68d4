import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryDeviceStore, SqliteDeviceStore } from "../src/index.js";
import { MessageDedup, processedRetentionMs } from "../src/message-dedup.js";
import { isRetryable, newIdempotencyKey } from "../src/send-retry.js";
import { ApiError } from "../src/errors.js";

describe("message de-duplication", () => {
  it("shows a message once per sender and id, across a restart of the store", () => {
    const path = join(mkdtempSync(join(tmpdir(), "zimchat-dedup-")), "device.db");
    const sender = randomUUID();
    const content = { v: 1 as const, id: randomUUID(), timestamp: 1_700_000_000_000, text: "once" };
    let store = new SqliteDeviceStore(path);
    assert.equal(new MessageDedup(store).firstSight(sender, 1, content), true);
    assert.equal(
      new MessageDedup(store).firstSight(sender, 2, { ...content, timestamp: 1 }),
      false,
      "same id, re-encrypted or from a retry",
    );
    assert.equal(
      new MessageDedup(store).firstSight(randomUUID(), 1, content),
      true,
      "another sender's id is another message",
    );
    store.close();
    store = new SqliteDeviceStore(path);
    assert.equal(new MessageDedup(store).firstSight(sender, 1, content), false, "remembered after a restart");
    // Content without an id (older senders): sender device and timestamp identify it.
    const old = { v: 1 as const, timestamp: 1_700_000_000_001, text: "old" };
    assert.equal(new MessageDedup(store).firstSight(sender, 1, old), true);
    assert.equal(new MessageDedup(store).firstSight(sender, 1, old), false);
    store.close();
  });

  it("keeps the processed ids bounded by age and count", () => {
    for (const store of [
      new SqliteDeviceStore(join(mkdtempSync(join(tmpdir(), "zimchat-dedup-")), "device.db")),
      new MemoryDeviceStore(),
    ]) {
      const now = Date.now();
      store.markProcessed("ancient", now - processedRetentionMs - 1);
      for (let i = 0; i < 20; i++) store.markProcessed(`id-${i}`, now - 20 + i);
      assert.equal(store.pruneProcessed(now - processedRetentionMs, 10), 11);
      assert.equal(store.hasProcessed("ancient"), false);
      assert.equal(store.hasProcessed("id-9"), false, "the oldest beyond the cap are forgotten");
      assert.equal(store.hasProcessed("id-19"), true);
      // The dedup prunes by itself as it goes: 1,000 messages leave at most what the cap allows.
      const dedup = new MessageDedup(store);
      for (let i = 0; i < 1000; i++) dedup.firstSight("s", 1, { v: 1, id: randomUUID(), timestamp: i });
      assert.ok(store.hasProcessed("id-19"));
      store.close();
    }
  });
});

describe("send retries", () => {
  it("makes 22-character base64url keys and retries only what got no answer", () => {
    const key = newIdempotencyKey();
    assert.match(key, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(newIdempotencyKey(), key);
    assert.equal(isRetryable(new TypeError("fetch failed")), true);
    assert.equal(isRetryable(new Error("socket has been disconnected")), true);
    assert.equal(isRetryable(new ApiError(503, { code: "unavailable", message: "" })), true);
    assert.equal(isRetryable(new ApiError(409, { code: "mismatched_devices", message: "" })), false);
    assert.equal(isRetryable(new ApiError(429, { code: "rate_limited", message: "" })), false);
  });
});
