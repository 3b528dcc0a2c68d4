import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { definePlugin } from "@zimchat/plugin-sdk/server";
import { z } from "zod";
import { roomyRateLimits, startServer, type TestServer } from "../support/harness.js";

// Observation 9: a plugin whose hook blocks the event loop (a synchronous
// busy loop cannot be timed out) used to freeze the server silently. Now the
// stall is logged afterwards with the plugin and hook, and counted.

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
    };
  },
});

describe("event-loop stalls in plugin code", () => {
  let server: TestServer;
  const logs: string[] = [];
  before(async () => {
    server = await startServer({ rateLimits: roomyRateLimits, plugins: [{ use: busy }], logLevel: "warn", eventLoopStallMs: 1000 }, logs);
  });
  after(async () => server?.stop());

  const stalls = async (): Promise<number> => {
    const text = (await server.http().get("/metrics")).text;
    const line = text.split("\n").find((l) => l.startsWith('zimchat_event_loop_stalls_total{plugin="busy-loop",hook="accountRegistered"}'));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };

  it("logs a warning naming the plugin and hook, and counts the stall", async () => {
    assert.equal(await stalls(), 0);
    await server.register();
    // The warning comes once the loop is free again (the next monitor tick).
    const deadline = Date.now() + 5000;
    let warning: Record<string, unknown> | undefined;
    while (!warning && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      warning = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.plugin === "busy-loop" && l.hook === "accountRegistered" && typeof l.stallMs === "number");
    }
    assert.ok(warning, `no stall warning in the log:\n${logs.join("")}`);
    assert.equal(warning.level, 40);
    assert.ok((warning.stallMs as number) >= 1000 && (warning.stallMs as number) < 10_000, `stallMs ${String(warning.stallMs)}`);
    assert.match(String(warning.msg), /busy-loop.*accountRegistered/);
    assert.equal(await stalls(), 1);
  });
});
