import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { freshDatabase } from "../support/harness.js";
import { callJson, drainQueue, registerPair, startChildServer, type ChildServer } from "../support/child-server.js";

const call = callJson;

describe("durability across SIGKILL", () => {
  const db = freshDatabase();
  const args = [
    "--data-dir",
    db.dataDir,
    "--database-url",
    db.url,
    "--registration",
    "open",
    "--rate-limits",
    "off",
    "--log-level",
    "warn",
  ];
  let server: ChildServer;
  before(async () => {
    server = await startChildServer(args);
  });
  after(async () => {
    server.child.kill("SIGKILL");
    await server.exited;
    await db.drop();
  });

  it("delivers every envelope that got a 2xx after kill -9 and restart, and deletes none without an ack", async () => {
    const { alice, bob } = await registerPair(server.url, ["alice_dur", "bob_dur"]);

    const acknowledged = new Set<string>();
    let refusedOrLost = 0;
    for (let round = 0; round < 3; round++) {
      // A burst of concurrent sends; the server is killed while some are in flight.
      const sends = [];
      for (let i = 0; i < 40; i++) {
        // Sequentially: each encryption advances the session state.
        const { type, content } = await alice.encrypt(bob.uuid, 1, `round ${round} message ${i}`);
        sends.push({ type, content, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId });
      }
      const before = acknowledged.size;
      let killNow: () => void = () => {};
      const enoughAcknowledged = new Promise<void>((resolve) => (killNow = resolve));
      const inFlight = sends.map((m, i) =>
        new Promise((resolve) => setTimeout(resolve, i * 3)).then(() =>
          call(server.url, "PUT", `/v1/messages/${bob.uuid}`, { messages: [m] }, alice.authHeader).then(
            (res) => {
              if (res.status === 200) acknowledged.add(res.body.envelopes[0].id);
              else refusedOrLost++;
              // Kill once some sends of this round are acknowledged and others are still in flight.
              if (acknowledged.size - before >= 5 + round * 5) killNow();
            },
            () => refusedOrLost++,
          ),
        ),
      );
      await Promise.race([enoughAcknowledged, Promise.all(inFlight)]);
      server.child.kill("SIGKILL");
      await Promise.all(inFlight);
      await server.exited;
      server = await startChildServer(args);
    }
    assert.ok(acknowledged.size > 0, "some sends must have been acknowledged before the kills");

    // Connect without acknowledging, kill, restart: nothing may be gone.
    const first = await drainQueue(server.url, bob);
    const firstIds = new Set(first.envelopes.map((e) => e.id));
    for (const id of acknowledged)
      assert.ok(firstIds.has(id), `envelope ${id} got a 2xx but was not delivered after restart`);
    first.socket.close();
    server.child.kill("SIGKILL");
    await server.exited;
    server = await startChildServer(args);

    const second = await drainQueue(server.url, bob);
    assert.deepEqual(
      new Set(second.envelopes.map((e) => e.id)),
      firstIds,
      "unacknowledged envelopes must survive a restart",
    );
    const acked = await second.socket.emitWithAck("ack", { ids: [...firstIds] });
    assert.deepEqual(acked, { ok: true, value: { deleted: firstIds.size } });
    second.socket.close();

    const after = await call(server.url, "GET", "/v1/messages", undefined, bob.authHeader);
    assert.deepEqual(after.body, { envelopes: [], more: false });
    // Every delivered envelope decrypts (none was torn by the crash).
    for (const e of first.envelopes)
      assert.match(await bob.decrypt(alice.uuid, 1, e.type, e.content), /^round \d message \d+$/);
    console.log(`durability: ${acknowledged.size} acknowledged sends delivered, ${refusedOrLost} cut off by kills`);
  });
});
