import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createLogger, openHomeserver, resolveConfig, type Homeserver } from "../../src/index.js";
import { clusterSkip, deleteRedisKeys, testRedisUrl } from "../support/cluster.js";
import { freshDatabase } from "../support/harness.js";

describe("background sweeps on several nodes", { skip: clusterSkip }, () => {
  const db = freshDatabase();
  const redisPrefix = `zt_${randomBytes(6).toString("hex")}`;
  const runs: { node: number; job: string }[] = [];
  const nodes: Homeserver[] = [];
  const sweepMs = 100;
  before(async () => {
    for (const node of [0, 1, 2]) {
      const config = resolveConfig({
        dataDir: db.dataDir,
        databaseUrl: db.url,
        redisUrl: testRedisUrl,
        redisPrefix,
        expirySweepMs: sweepMs,
        logLevel: "debug",
      });
      const logger = createLogger(config.logLevel, {
        write: (line: string) => {
          const entry = JSON.parse(line) as { msg: string; job?: string };
          if (entry.msg === "background job ran") runs.push({ node, job: entry.job! });
        },
      });
      nodes.push(await openHomeserver(config, logger));
    }
  });
  after(async () => {
    for (const node of nodes) await node.close();
    await db.drop();
    await deleteRedisKeys(redisPrefix);
  });

  it("run once per period across the cluster, not once per node", async () => {
    runs.length = 0;
    const periods = 15;
    await new Promise((resolve) => setTimeout(resolve, periods * sweepMs));
    for (const job of ["sweep:envelopes", "sweep:attachments", "sweep:link-codes", "sweep:federation-outbox"]) {
      const count = runs.filter((r) => r.job === job).length;
      // Three unlocked nodes would run each job about 3 x 15 = 45 times. A lock lives 0.9 of a period, so timer
      // jitter on a loaded machine can fit a few more runs than periods.
      assert.ok(count >= 5 && count <= periods + 4, `${job} ran ${count} times in ${periods} periods`);
    }
  });
});
