import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Session } from "node:inspector";
import { fileURLToPath } from "node:url";
import {
  analyzeCpuProfiles,
  formatProfileBreakdown,
  packageOf,
  sampleTimes,
  type CallFrame,
  type CpuProfile,
} from "../src/profile-analysis.js";

const root = "/repo/";
const workspaces = { server: "@zimchat/server", protocol: "@zimchat/protocol" };
const frame = (functionName: string, url: string, lineNumber = 0): CallFrame => ({
  functionName,
  url,
  lineNumber,
  columnNumber: 0,
  scriptId: 0,
});

describe("packageOf", () => {
  const of = (url: string, functionName = "f"): string => packageOf({ url, functionName }, { root, workspaces });

  it("names node_modules packages, scoped or not, by the innermost node_modules", () => {
    assert.equal(of("file:///repo/node_modules/socket.io-parser/build/cjs/index.js"), "socket.io-parser");
    assert.equal(of("file:///repo/node_modules/@prisma/client/runtime/client.js"), "@prisma/client");
    assert.equal(of("file:///repo/node_modules/engine.io/node_modules/ws/lib/sender.js"), "ws");
    assert.equal(of("file:///repo/server/node_modules/%40scope/pkg/x.js"), "@scope/pkg");
  });

  it("names the project's workspaces by folder, and the generated Prisma clients apart", () => {
    assert.equal(of("file:///repo/server/dist/src/gateway/socket.js"), "@zimchat/server");
    assert.equal(of("file:///repo/protocol/dist/src/index.js"), "@zimchat/protocol");
    assert.equal(of("file:///repo/bench/dist/src/child-hook.js"), "bench/");
    assert.equal(
      of("file:///repo/server/dist/src/generated/prisma-sqlite/internal/class.js"),
      "@zimchat/server (generated Prisma client)",
    );
    assert.equal(of("file:///elsewhere/x.js"), "(other)");
  });

  it("names node internals and V8's own entries", () => {
    assert.equal(of("node:internal/stream_base_commons"), "node: internals");
    assert.equal(of("node:net"), "node: internals");
    assert.equal(of("", "(garbage collector)"), "(garbage collector)");
    assert.equal(of("", "(program)"), "(program)");
    assert.equal(of("", "(idle)"), "(idle)");
    assert.equal(of("", "Array.prototype.push"), "(V8 builtins)");
    assert.equal(of("wasm://wasm/1234"), "(wasm)");
  });
});

describe("analyzeCpuProfiles", () => {
  // root -> a (server) -> b (prisma); plus idle and GC. Sample durations come from the next sample's delta.
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame("(root)", ""), children: [2, 4, 5, 7] },
      { id: 2, callFrame: frame("deliver", "file:///repo/server/dist/src/services/deliver.js", 9), children: [3] },
      {
        id: 3,
        callFrame: frame("executeIO", "file:///repo/node_modules/@prisma/adapter-better-sqlite3/dist/i.js"),
        children: [6],
      },
      { id: 4, callFrame: frame("(idle)", "") },
      { id: 5, callFrame: frame("(garbage collector)", "") },
      // better-sqlite3's native `run`, called by the adapter: no script of its own.
      { id: 6, callFrame: frame("run", "") },
      { id: 7, callFrame: frame("Array.prototype.push", "") },
    ],
    startTime: 1_000,
    // Samples at 1000, 2000, 4000, 8000, 9000, 10000, 10500; the last lasts until endTime 11000.
    samples: [2, 3, 3, 4, 5, 6, 7],
    timeDeltas: [0, 1_000, 2_000, 4_000, 1_000, 1_000, 500],
    endTime: 11_000,
  };

  it("gives each sample the time until the next one", () => {
    assert.deepEqual(sampleTimes(profile), [
      [2, 1_000],
      [3, 2_000],
      [3, 4_000],
      [4, 1_000],
      [5, 1_000],
      [6, 500],
      [7, 500],
    ]);
  });

  it("adds self time per package and function, as percentages of busy time", () => {
    const b = analyzeCpuProfiles([profile], { root, workspaces });
    assert.equal(b.totalMs, 10);
    assert.equal(b.idleMs, 1);
    assert.equal(b.busyMs, 9);
    assert.equal(b.samples, 7);
    // The native `run` (0.5 ms) counts for its caller's package; a builtin called from the root stays a builtin.
    assert.deepEqual(
      b.packages.map((p) => [p.package, p.selfMs, Math.round(p.percent * 1000) / 1000]),
      [
        ["@prisma/adapter-better-sqlite3", 6.5, 72.222],
        ["@zimchat/server", 1, 11.111],
        ["(garbage collector)", 1, 11.111],
        ["(V8 builtins)", 0.5, 5.556],
      ],
    );
    assert.deepEqual(
      b.functions.find((f) => f.functionName === "run"),
      {
        functionName: "run",
        package: "@prisma/adapter-better-sqlite3",
        location: "(native or builtin)",
        selfMs: 0.5,
        percent: (0.5 / 9) * 100,
      },
    );
    assert.deepEqual(b.functions[0], {
      functionName: "executeIO",
      package: "@prisma/adapter-better-sqlite3",
      location: "@prisma/adapter-better-sqlite3/dist/i.js:1",
      selfMs: 6,
      percent: (6 / 9) * 100,
    });
    assert.equal(b.functions[1]!.location, "server/dist/src/services/deliver.js:10");
    const text = formatProfileBreakdown(b);
    assert.match(text, /@prisma\/adapter-better-sqlite3\s+72\.2%/);
    assert.match(text, /busy 0\.01 s of 0\.01 s sampled \(7 samples\)/);
  });

  it("adds several profiles (threads of one process) together", () => {
    const b = analyzeCpuProfiles([profile, profile], { root, workspaces });
    assert.equal(b.busyMs, 18);
    assert.equal(b.packages[0]!.selfMs, 13);
  });

  it("reads a real profile of this process", async () => {
    const session = new Session();
    session.connect();
    const post = (method: string): Promise<unknown> =>
      new Promise((resolve, reject) =>
        session.post(method, (error, result) => (error ? reject(error) : resolve(result))),
      );
    await post("Profiler.enable");
    await post("Profiler.start");
    const until = performance.now() + 50;
    let x = 0;
    while (performance.now() < until) x += Math.sqrt(x + 1);
    const { profile: real } = (await post("Profiler.stop")) as { profile: CpuProfile };
    session.disconnect();
    const testRoot = fileURLToPath(new URL("../../../", import.meta.url));
    const b = analyzeCpuProfiles([real], { root: testRoot, workspaces: { bench: "@zimchat/bench" } });
    assert.ok(b.samples > 0 && b.busyMs > 0);
    assert.ok(
      b.packages.some((p) => p.package === "@zimchat/bench"),
      `this file's loop is in the profile: ${JSON.stringify(b.packages)}`,
    );
    const sum = b.packages.reduce((s, p) => s + p.percent, 0);
    assert.ok(Math.abs(sum - 100) < 1e-6, `percentages add up to 100 (${sum})`);
  });
});
