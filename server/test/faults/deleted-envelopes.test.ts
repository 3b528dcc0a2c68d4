import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  encryptFor,
  roomyRateLimits,
  startServer,
  startSession,
  testProvider,
  type TestServer,
  type TestSocket,
} from "../support/harness.js";
import type { SignalDevice } from "@zimchat/testing/signal";

// Acknowledged envelopes must leave the disk within seconds, under load.
// Before: a byte copy of a running server's zimchat.db + zimchat.db-wal held
// hundreds of acknowledged envelopes until a checkpoint (secure_delete zeroes
// the page in the WAL, but older WAL frames keep the row as inserted). The
// test acks envelopes while other sends keep the database busy, then looks
// for 24 bytes of each acknowledged ciphertext in a copy of both files.

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The markers (ciphertext slices) found in a byte copy of the database and its WAL. */
function found(dataDir: string, markers: Buffer[]): number {
  const files = ["zimchat.db", "zimchat.db-wal"].map((name) => {
    try {
      return readFileSync(join(dataDir, name));
    } catch {
      return Buffer.alloc(0);
    }
  });
  return markers.filter((m) => files.some((f) => f.includes(m))).length;
}

describe(
  "acknowledged envelopes leave the SQLite files within seconds",
  {
    skip:
      testProvider !== "sqlite" &&
      "SQLite files only: PostgreSQL keeps dead tuples and WAL until vacuum and checkpoint (see docs/security-and-limits.md)",
  },
  () => {
    let server: TestServer;
    let alice: SignalDevice;
    let bob: SignalDevice;
    let carol: SignalDevice;
    let bobSocket: TestSocket;
    const logs: string[] = [];
    before(async () => {
      // Sends in a tight loop: a send limit it cannot reach (the default is tested elsewhere).
      const rateLimits = { ...roomyRateLimits, send: { points: 100_000, durationSeconds: 1 } };
      server = await startServer({ rateLimits, logLevel: "warn" }, logs);
      [alice, bob, carol] = [await server.register(), await server.register(), await server.register()];
      await startSession(server, alice, bob);
      await startSession(server, alice, carol);
      bobSocket = await server.connect(bob);
    });
    after(async () => server?.stop());

    const send = async (to: SignalDevice, text: string): Promise<{ id: string; content: string }> => {
      const messages = await encryptFor(
        alice,
        { uuid: to.uuid, devices: [{ deviceId: 1, registrationId: to.registrationId }] },
        text,
      );
      const res = await server
        .http()
        .put(`/v1/messages/${to.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return { id: res.body.envelopes[0].id as string, content: messages[0]!.content };
    };

    it("finds none of 200 acknowledged envelopes in a copy of zimchat.db + zimchat.db-wal within 8 s", async () => {
      // Background load: sends to Carol (never acknowledged) all along.
      let loading = true;
      let background = 0;
      const load = (async () => {
        while (loading && background < 2000) {
          await send(carol, `load ${background++}`);
          await sleep(20);
        }
      })();
      try {
        const markers: Buffer[] = [];
        for (let batch = 0; batch < 10; batch++) {
          const sent = [];
          for (let i = 0; i < 20; i++) sent.push(await send(bob, `secret ${batch}-${i} ${"x".repeat(200)}`));
          for (const { content } of sent) {
            const bytes = Buffer.from(content, "base64");
            markers.push(bytes.subarray(bytes.length >> 1, (bytes.length >> 1) + 24));
          }
          // Queued, the markers are on disk: the search can find them.
          if (batch === 0)
            assert.ok(
              found(server.dataDir, markers) >= 15,
              "queued envelopes must be found in the files (the search works)",
            );
          const acked = await bobSocket.socket.emitWithAck("ack", { ids: sent.map((s) => s.id) });
          assert.deepEqual(acked, { ok: true, value: { deleted: sent.length } });
        }
        const ackedAt = performance.now();
        let left = found(server.dataDir, markers);
        while (left > 0 && performance.now() - ackedAt < 8000) {
          await sleep(250);
          left = found(server.dataDir, markers);
        }
        const seconds = (performance.now() - ackedAt) / 1000;
        console.log(
          `deleted envelopes: ${left} of ${markers.length} still on disk after ${seconds.toFixed(1)} s (${background} background sends)`,
        );
        assert.equal(
          left,
          0,
          `${left} of ${markers.length} acknowledged envelopes are still in zimchat.db / zimchat.db-wal after ${seconds.toFixed(1)} s`,
        );
        assert.deepEqual(
          logs.filter((l) => l.includes("checkpoint failed")),
          [],
          "checkpoints under load must not fail",
        );
      } finally {
        loading = false;
        await load;
      }
    });
  },
);
