import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { freshDatabase, testProvider } from "../support/harness.js";
import {
  callJson as call,
  drainQueue,
  registerPair,
  startChildServer,
  type ChildServer,
} from "../support/child-server.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("kill -9 while the storage worker holds uncommitted batches", { skip: testProvider !== "sqlite" }, () => {
  const db = freshDatabase();
  const args = ["--data-dir", db.dataDir, "--database-url", db.url, "--registration", "open"];
  // No periodic WAL checkpoint: under the other process's lock it would make the worker wait on it too.
  const serverArgs = [...args, "--rate-limits", "off", "--log-level", "warn", "--sqlite-checkpoint-ms", "0"];
  let server: ChildServer;
  before(async () => {
    server = await startChildServer(serverArgs);
  });
  after(async () => {
    server.child.kill("SIGKILL");
    await server.exited;
    await db.drop();
  });

  it("loses nothing answered 2xx, delivers nothing unanswered, and keeps serving while the worker waits", async () => {
    const { alice, bob } = await registerPair(server.url, ["alice_worker_kill", "bob_worker_kill"]);
    const message = async (text: string) => {
      const { type, content } = await alice.encrypt(bob.uuid, 1, text);
      return { messages: [{ type, content, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] };
    };
    const bobOnline = await drainQueue(server.url, bob);

    // Answered before the worker is held up.
    const answered = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const res = await call(
        server.url,
        "PUT",
        `/v1/messages/${bob.uuid}`,
        await message(`before ${i}`),
        alice.authHeader,
      );
      assert.equal(res.status, 200);
      answered.add(res.body.envelopes[0].id);
    }

    // Another process takes SQLite's write lock: the worker's next commit waits on it (busy timeout 5 s), holding the
    // batch it was given uncommitted, while the main thread goes on accepting sends into the next batch.
    const blocker = new BetterSqlite3(join(db.dataDir, "zimchat.db"), { timeout: 5000 });
    blocker.exec("BEGIN IMMEDIATE");
    try {
      const bodies = [];
      for (let i = 0; i < 20; i++) bodies.push(await message(`held ${i}`));
      let unanswered = 0;
      const held = bodies.map((body) =>
        call(server.url, "PUT", `/v1/messages/${bob.uuid}`, body, alice.authHeader).then(
          (res) => {
            if (res.status === 200) answered.add(res.body.envelopes[0].id);
          },
          () => unanswered++,
        ),
      );
      // Well under Prisma's 2 s wait for a transaction slot, after which a queued send is answered 500.
      await sleep(500);
      // The event loop is free while the worker waits: reads (on the worker's reader connection) and sockets answer.
      const ready = await call(server.url, "GET", "/readyz");
      assert.equal(ready.status, 200, "/readyz reads the database");
      const queued = await call(server.url, "GET", "/v1/messages", undefined, bob.authHeader);
      assert.equal(queued.status, 200);
      assert.equal(queued.body.envelopes.length, 10, "a read sees the committed envelopes, not the held batch");
      assert.equal(answered.size, 10, "no held send is answered before its commit");

      server.child.kill("SIGKILL");
      await Promise.all(held);
      await server.exited;
      assert.ok(unanswered > 0, "the kill cut off sends whose batch was held uncommitted");
    } finally {
      blocker.exec("ROLLBACK");
      blocker.close();
    }
    bobOnline.socket.close();
    const pushedBeforeKill = new Set(bobOnline.envelopes.map((e) => e.id));
    for (const id of pushedBeforeKill) assert.ok(answered.has(id), `envelope ${id} was pushed but never answered`);

    server = await startChildServer(serverArgs);
    const afterRestart = await drainQueue(server.url, bob);
    const stored = new Set(afterRestart.envelopes.map((e) => e.id));
    afterRestart.socket.close();
    assert.deepEqual(stored, answered, "exactly the answered envelopes survive the kill");
    for (const e of afterRestart.envelopes)
      assert.match(await bob.decrypt(alice.uuid, 1, e.type, e.content), /^before \d$/);
  });
});
