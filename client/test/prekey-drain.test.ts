/**
 * One-time pre-key draining ("Prekey Pogo", arXiv 2504.07323): several
 * accounts fetching one victim's bundles as fast as the per-pair limit
 * allows used to empty its one-time keys. With the per-target budget the
 * victim keeps a floor of one-time keys, bundles past the budget carry no
 * one-time EC key and the last-resort Kyber key, sessions still start, and
 * the victim's client hears of the drain and refills.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ApiError, HttpApi, type ZimClient } from "../src/index.js";
import { type Homeserver, inbox, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";

describe("one-time pre-key drain", () => {
  let server: Homeserver;
  const clients: ZimClient[] = [];
  before(async () => {
    // Default rate limits (the suite's homeserver turns them off).
    server = await startHomeserver(["--rate-limits", "on"]);
  });
  after(async () => {
    for (const c of clients) await c.close();
    await server.stop();
  });

  const api = (c: ZimClient): HttpApi =>
    new HttpApi(server.url, { uuid: c.local.uuid, deviceId: 1, password: c.local.password });

  it("keeps a floor of one-time keys under several drainers; sessions still start; the owner is told and refills", async (t) => {
    const victim = await registerDevice(server.url, undefined, { sendReceipts: false });
    clients.push(victim);
    const drainSignals: { ecCount: number; pqCount: number }[] = [];
    victim.on("preKeysDraining", (counts) => drainSignals.push(counts));
    await victim.connect();
    const initial = await api(victim).keyCount();
    assert.equal(initial.ecCount, 100);

    const drainers = await Promise.all([0, 1, 2].map(() => registerDevice(server.url)));
    clients.push(...drainers);
    let lowestEc = initial.ecCount;
    let lowestPq = initial.pqCount;
    let withoutOneTime = 0;
    let fetched = 0;
    // Each drainer as fast as the per-pair limit allows (60 a minute): 180 claims, bounded in count and time.
    const deadline = Date.now() + 20_000;
    await Promise.all(
      drainers.map(async (d) => {
        for (let i = 0; i < 60 && Date.now() < deadline; i++) {
          try {
            const bundle = await api(d).preKeyBundle(victim.local.uuid, 1);
            fetched++;
            if (bundle.devices[0]!.preKey === null) withoutOneTime++;
          } catch (error) {
            if (error instanceof ApiError && error.status === 429) break;
            throw error;
          }
          if (i % 10 === 9) {
            const counts = await api(victim).keyCount();
            lowestEc = Math.min(lowestEc, counts.ecCount);
            lowestPq = Math.min(lowestPq, counts.pqCount);
          }
        }
      }),
    );
    const final = await api(victim).keyCount();
    lowestEc = Math.min(lowestEc, final.ecCount);
    lowestPq = Math.min(lowestPq, final.pqCount);
    t.diagnostic(
      `${fetched} bundles fetched by 3 accounts, ${withoutOneTime} without a one-time key; lowest one-time counts EC ${lowestEc}, Kyber ${lowestPq} (of ${initial.ecCount})`,
    );
    assert.ok(fetched >= 150, `bundles fetched: ${fetched}`);
    assert.ok(lowestEc >= 40, `one-time EC keys fell to ${lowestEc} of ${initial.ecCount}`);
    assert.ok(lowestPq >= 40, `one-time Kyber keys fell to ${lowestPq} of ${initial.pqCount}`);
    assert.ok(withoutOneTime >= 50, `bundles without a one-time key: ${withoutOneTime}`);

    // The owner's client heard of it (socket event, then the key count's `draining`) and refilled.
    await until(drainSignals, 1);
    const refilled = Date.now() + 10_000;
    while ((await api(victim).keyCount()).ecCount < 100 && Date.now() < refilled)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal((await api(victim).keyCount()).ecCount, 100, "refilled to a full batch");

    // Past the budget a bundle has no one-time EC key and the last-resort Kyber key, and a session still starts on it.
    const late = await api(drainers[0]!)
      .preKeyBundle(victim.local.uuid, 1)
      .catch(() => null);
    if (late) assert.equal(late.devices[0]!.preKey, null);
    const sender = await registerDevice(server.url, undefined, { sendReceipts: false });
    clients.push(sender);
    const received = inbox(victim);
    await sender.sendText(victim.local.username, "over a last-resort bundle");
    await until(received, 1);
    assert.equal(received[0]!.text, "over a last-resort bundle");
  });
});
