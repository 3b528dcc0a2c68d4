import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { closeSync, openSync } from "node:fs";
import { SafeDestination } from "../../src/faults/log-destination.js";
import { createLogger, droppedLogLines } from "../../src/logger.js";
import { Metrics } from "../../src/metrics/metrics.js";

// The log destination on a device that is always full (/dev/full answers
// every write with ENOSPC): logging never throws or blocks, the buffer stays
// bounded, and dropped lines reach /metrics.

describe("log destination on a full device", { skip: process.platform !== "linux" && "needs /dev/full" }, () => {
  it("buffers up to its limit, drops and counts the rest, never throws or blocks", async () => {
    const fd = openSync("/dev/full", "w");
    const destination = new SafeDestination(fd, 16 * 1024);
    try {
      const logger = createLogger("info", destination);
      const started = performance.now();
      for (let i = 0; i < 2000; i++) logger.info({ i }, "a line that cannot be written");
      const ms = performance.now() - started;
      assert.ok(ms < 2000, `2,000 log calls took ${ms.toFixed(0)} ms`);
      // About 16 KiB of ~90-byte lines are kept; the rest are dropped.
      assert.ok(destination.dropped > 1500 && destination.dropped < 2000, `dropped ${destination.dropped}`);
      assert.equal(droppedLogLines(logger), destination.dropped);
      assert.equal(
        droppedLogLines(logger.child({ plugin: "x" })),
        destination.dropped,
        "children share the destination",
      );
      const metrics = new Metrics(
        async () => 0,
        () => droppedLogLines(logger),
      );
      const text = await metrics.registry.metrics();
      assert.match(text, new RegExp(`^zimchat_log_lines_dropped_total ${destination.dropped}$`, "m"));
    } finally {
      destination.end();
      closeSync(fd);
    }
  });
});
