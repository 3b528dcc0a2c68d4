import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { definePlugin } from "@zimchat/plugin-sdk/server";
import { z } from "zod";
import { roomyRateLimits, startServer, type TestServer } from "../support/harness.js";

// A plugin whose hook blocks the event loop (a synchronous busy loop cannot
// be timed out) must not freeze the server silently: the stall is logged
// afterwards with the plugin and hook, and counted.

const busy = definePlugin({
  name: "busy-loop",
  configSchema: z.object({}).strict(),
  setup() {
    return {
      accountRegistered() {
        const until = Date.now() + 1500;
        while (Date.now() < until) {
          // Blocks the event loop on purpose.
        }
      },
      async keysUploaded() {
        // After an await: the host no longer runs this code when it blocks; the call is still in flight.
        await new Promise((resolve) => setTimeout(resolve, 10));
        const until = Date.now() + 1300;
        while (Date.now() < until) {
          // Blocks the event loop on purpose.
        }
      },
    };
  },
});

describe("event-loop stalls in plugin code", () => {
  let server: TestServer;
  const logs: string[] = [];
  before(async () => {
    server = await startServer(
      { rateLimits: roomyRateLimits, plugins: [{ use: busy }], logLevel: "warn", eventLoopStallMs: 1000 },
      logs,
    );
  });
  after(async () => server?.stop());

  const stalls = async (hook = "accountRegistered"): Promise<number> => {
    const text = (await server.http().get("/metrics")).text;
    const line = text
      .split("\n")
      .find((l) => l.startsWith(`zimchat_event_loop_stalls_total{plugin="busy-loop",hook="${hook}"}`));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };
  const warning = async (hook: string): Promise<Record<string, unknown> | undefined> => {
    const deadline = Date.now() + 5000;
    let found: Record<string, unknown> | undefined;
    while (!found && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      found = logs
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.plugin === "busy-loop" && l.hook === hook && typeof l.stallMs === "number");
    }
    return found;
  };

  it("logs a warning naming the plugin and hook, and counts the stall", async () => {
    assert.equal(await stalls(), 0);
    await server.register();
    // The warning comes once the loop is free again (the next monitor tick).
    const found = await warning("accountRegistered");
    assert.ok(found, `no stall warning in the log:\n${logs.join("")}`);
    assert.equal(found.level, 40);
    assert.equal(found.exact, true);
    assert.ok(
      (found.stallMs as number) >= 1000 && (found.stallMs as number) < 10_000,
      `stallMs ${String(found.stallMs)}`,
    );
    assert.match(String(found.msg), /busy-loop.*accountRegistered/);
    assert.equal(await stalls(), 1);
  });

  it("names the plugin whose call is in flight when it blocks after an await", async () => {
    const device = await server.register();
    const before = await stalls("keysUploaded");
    const res = await server
      .http()
      .put("/v1/keys")
      .set("Authorization", device.authHeader)
      .send(device.keyUpload(2, 1));
    assert.equal(res.status, 204);
    const found = await warning("keysUploaded");
    assert.ok(found, `no stall warning in the log:\n${logs.join("")}`);
    assert.equal(found.exact, false);
    assert.equal(await stalls("keysUploaded"), before + 1);
  });
});
