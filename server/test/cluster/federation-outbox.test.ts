import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import type { Envelope } from "@zimchat/protocol";
import { SignalDevice } from "@zimchat/testing/signal";
import { createLogger, JobLocks, openHomeserver, resolveConfig, type Homeserver } from "../../src/index.js";
import { clusterSkip, deleteRedisKeys, testRedisUrl } from "../support/cluster.js";
import { federated, freePort, type FederatedServer } from "../support/federation.js";
import { encryptFor, freshDatabase, registerDevice } from "../support/harness.js";

describe("the federation outbox on several nodes", { skip: clusterSkip }, () => {
  const redisPrefix = `zt_${randomBytes(6).toString("hex")}`;

  it("a destination's lock is held by one node at a time, released after the transaction, and expires with its lease", async () => {
    const redis = new Redis(testRedisUrl);
    try {
      const [a, b] = [new JobLocks(redis, redisPrefix), new JobLocks(redis, redisPrefix)];
      let release!: () => void;
      const holding = new Promise<void>((r) => (release = r));
      const first = a.runExclusive("federation-outbox:x", 10_000, () => holding);
      await new Promise((r) => setTimeout(r, 50));
      let ran = false;
      assert.equal(await b.runExclusive("federation-outbox:x", 10_000, async () => void (ran = true)), false);
      assert.equal(ran, false, "the second node did not run while the first held the destination");
      release();
      assert.equal(await first, true);
      assert.equal(await b.runExclusive("federation-outbox:x", 10_000, async () => void (ran = true)), true);
      assert.equal(ran, true, "released after the transaction");
      // A node that died holding it: the lease ends it.
      await redis.set(`${redisPrefix}:lock:federation-outbox:y`, "dead node", "PX", 100);
      assert.equal(await b.runExclusive("federation-outbox:y", 10_000, async () => undefined), false);
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(await b.runExclusive("federation-outbox:y", 10_000, async () => undefined), true);
    } finally {
      redis.disconnect();
    }
  });

  describe("two nodes of one server relay to a server that was down", () => {
    const db = freshDatabase();
    const nodes: Homeserver[] = [];
    let name: string;
    let newsPort: number;
    let news: FederatedServer | undefined;
    before(async () => {
      const port = await freePort();
      name = `127.0.0.1:${port}`;
      newsPort = await freePort();
      for (const node of [0, 1]) {
        const config = resolveConfig({
          dataDir: db.dataDir,
          databaseUrl: db.url,
          redisUrl: testRedisUrl,
          redisPrefix,
          serverName: name,
          federation: "open",
          federationInsecurePeers: true,
          registration: "open",
          logLevel: "silent",
          port,
        });
        const home = await openHomeserver(config, createLogger("silent"));
        // Node 0 answers on the server's name; node 1 serves its own port (as behind a load balancer).
        await new Promise<void>((resolve) => home.httpServer.listen(node === 0 ? port : 0, "127.0.0.1", resolve));
        nodes.push(home);
      }
    });
    after(async () => {
      for (const node of nodes) await node.close();
      await news?.stop();
      await db.drop();
      await deleteRedisKeys(redisPrefix);
    });

    it("each node's queued sends arrive exactly once, in one transaction at a time", async () => {
      const url = (n: number) => `http://127.0.0.1:${(nodes[n]!.httpServer.address() as AddressInfo).port}`;
      const alice = await registerDevice(url(0), "alice");
      const dave = await registerDevice(url(1), "dave");
      // Bob's server is down: sends from both nodes queue. Bob's registration id and keys come later.
      const bob = new SignalDevice();
      news = await federated({ port: newsPort });
      bob.uuid = (await news.http().post("/v1/accounts").send(bob.registration("bob"))).body.uuid;
      await news.http().put("/v1/keys").set("authorization", bob.authHeader).send(bob.keyUpload(10, 10));
      for (const [n, from] of [
        [0, alice],
        [1, dave],
      ] as const) {
        const res = await fetch(`${url(n)}/v1/federation/${news.name}/keys/${bob.uuid}/*`, {
          headers: { authorization: from.authHeader },
        });
        await from.processBundle(bob.uuid, (await res.json()) as never);
      }
      await news.halt();
      const texts: string[] = [];
      for (let i = 0; i < 6; i++) {
        for (const [n, from, who] of [
          [0, alice, "alice"],
          [1, dave, "dave"],
        ] as const) {
          const text = `${who} ${i}`;
          const messages = await encryptFor(
            from,
            { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
            text,
          );
          const res = await fetch(`${url(n)}/v1/federation/${news.name}/messages/${bob.uuid}`, {
            method: "PUT",
            headers: { authorization: from.authHeader, "content-type": "application/json" },
            body: JSON.stringify({ messages }),
          });
          assert.equal(res.status, 200);
          assert.equal(((await res.json()) as { queued: boolean }).queued, true);
          texts.push(text);
        }
      }
      await news.restart();
      // Both nodes hear from news at once (as each would on its next signed request from it).
      for (const node of nodes) node.services.federation.outbox.heardFrom(news.name);
      const got: Envelope[] = [];
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && got.length < texts.length) {
        await new Promise((r) => setTimeout(r, 200));
        const page = await news.http().get("/v1/messages").set("authorization", bob.authHeader);
        got.splice(0, got.length, ...(page.body.envelopes as Envelope[]));
      }
      const plaintexts: string[] = [];
      for (const e of got) plaintexts.push(await bob.decrypt(e.sourceUuid!, 1, e.type, e.content));
      assert.deepEqual([...plaintexts].sort(), [...texts].sort(), "every queued send, once");
      for (const who of ["alice", "dave"]) {
        assert.deepEqual(
          plaintexts.filter((t) => t.startsWith(who)),
          texts.filter((t) => t.startsWith(who)),
          `${who}'s sends in order`,
        );
      }
    });
  });
});
