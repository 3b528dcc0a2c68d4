import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import request from "supertest";
import { io as connectClient, type Socket } from "socket.io-client";
import type {
  ClientToServerEvents,
  Envelope,
  PreKeyBundleResponse,
  SendMessagesResponse,
  ServerToClientEvents,
  SocketResult,
} from "@zimchat/protocol";
import { clusterSkip, startCluster, startProxy, type TestCluster } from "../support/cluster.js";
import { connectDevice, encryptFor, registerDevice } from "../support/harness.js";
import type { SignalDevice } from "@zimchat/testing/signal";

async function fetchBundle(
  url: string,
  from: SignalDevice,
  to: SignalDevice,
): Promise<{ status: number; body: PreKeyBundleResponse }> {
  const res = await request(url).get(`/v1/keys/${to.uuid}/1`).set("Authorization", from.authHeader);
  return { status: res.status, body: res.body as PreKeyBundleResponse };
}

/** Waits until `condition` holds, failing after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function startSessionAt(url: string, from: SignalDevice, to: SignalDevice): Promise<void> {
  const { status, body } = await fetchBundle(url, from, to);
  assert.equal(status, 200, JSON.stringify(body));
  await from.processBundle(to.uuid, body);
}

describe("three homeserver nodes on one PostgreSQL and one Redis", { skip: clusterSkip }, () => {
  let cluster: TestCluster;
  let a: string;
  let b: string;
  let c: string;
  before(async () => {
    cluster = await startCluster(3);
    [a, b, c] = cluster.nodes.map((n) => n.url) as [string, string, string];
  });
  after(async () => cluster?.stop());

  it("started on one shared data directory with one trust root", async () => {
    const roots = await Promise.all(
      cluster.nodes.map(async (n) => (await request(n.url).get("/v1/certificate/trust-root")).body as unknown),
    );
    assert.ok(roots[0], "trust root served");
    assert.deepEqual(roots[1], roots[0]);
    assert.deepEqual(roots[2], roots[0]);
  });

  it("delivers a message sent through node A to a device connected to node C", async () => {
    const alice = await registerDevice(a);
    const bob = await registerDevice(b);
    await startSessionAt(a, alice, bob);
    const bobOnC = await connectDevice(c, bob);
    try {
      await bobOnC.queueEmpty;
      const aliceOnA = await connectDevice(a, alice);
      const messages = await encryptFor(
        alice,
        { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
        "across the cluster",
      );
      const sent = (await aliceOnA.socket.emitWithAck("send", {
        destination: bob.uuid,
        messages,
      })) as SocketResult<SendMessagesResponse>;
      aliceOnA.close();
      assert.ok(sent.ok, JSON.stringify(sent));
      const [envelope] = await bobOnC.waitFor(1);
      assert.equal(envelope!.id, sent.value.envelopes[0]!.id);
      assert.equal(await bob.decrypt(alice.uuid, 1, envelope!.type, envelope!.content), "across the cluster");
    } finally {
      bobOnC.close();
    }
  });

  it("hands out each one-time pre-key once under concurrent bundle fetches spread over the nodes", async () => {
    const bob = await registerDevice(a);
    const upload = await request(b).put("/v1/keys").set("Authorization", bob.authHeader).send(bob.keyUpload(40, 0));
    assert.equal(upload.status, 204);
    const requesters = await Promise.all([registerDevice(a), registerDevice(b), registerDevice(c)]);
    const nodes = [a, b, c];
    // 60 fetches at once, 20 per node and 20 per requester (under the per-requester limit): 40 get a key, 20 none.
    const fetches = await Promise.all(
      Array.from({ length: 60 }, (_, i) => fetchBundle(nodes[i % 3]!, requesters[Math.floor(i / 20)]!, bob)),
    );
    assert.deepEqual(
      fetches.map((f) => f.status),
      Array(60).fill(200),
    );
    const keyIds = fetches.flatMap((f) => (f.body.devices[0]!.preKey ? [f.body.devices[0]!.preKey.keyId] : []));
    assert.equal(keyIds.length, 40);
    assert.equal(new Set(keyIds).size, 40, "a one-time key was handed out twice");
  });

  it("keeps rate limits in Redis: one bucket across the nodes", async () => {
    const bob = await registerDevice(a);
    const eve = await registerDevice(a);
    // The bundle limit is 60 per minute per requester and target; 60 spread over three nodes use it up.
    const statuses = await Promise.all(
      Array.from({ length: 61 }, (_, i) => fetchBundle([a, b, c][i % 3]!, eve, bob).then((f) => f.status)),
    );
    assert.equal(statuses.filter((s) => s === 200).length, 60);
    assert.equal(statuses.filter((s) => s === 429).length, 1);
  });

  it("displaces a device's connection on node A when it connects again on node B", async () => {
    const bob = await registerDevice(a);
    const alice = await registerDevice(c);
    await startSessionAt(c, alice, bob);
    const first = await connectDevice(a, bob);
    await first.queueEmpty;
    const closing = new Promise<string>((resolve) => first.socket.once("closing", resolve));
    const disconnected = new Promise<string>((resolve) => first.socket.once("disconnect", resolve));
    const second = await connectDevice(b, bob);
    try {
      assert.equal(await closing, "displaced");
      assert.equal(await disconnected, "io server disconnect");
      await second.queueEmpty;
      // The relayed disconnect did not reach the new connection: it is still there and still receives.
      assert.ok(second.socket.connected);
      const messages = await encryptFor(
        alice,
        { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
        "still here",
      );
      const res = await request(c)
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      assert.equal(res.status, 200);
      const [envelope] = await second.waitFor(1);
      assert.equal(await bob.decrypt(alice.uuid, 1, envelope!.type, envelope!.content), "still here");
      assert.ok(second.socket.connected);
      assert.equal(first.received.length, 0);
    } finally {
      first.close();
      second.close();
    }
  });
});

describe("a node killed with SIGKILL while clients send", { skip: clusterSkip }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await startCluster(3);
  });
  after(async () => cluster?.stop());

  it("its clients reconnect to another node and no acknowledged envelope is lost", async () => {
    const proxy = await startProxy(cluster.nodes.map((n) => n.url));
    const sockets: Socket<ServerToClientEvents, ClientToServerEvents>[] = [];
    let reconnects = 0;
    const connect = (device: SignalDevice): Socket<ServerToClientEvents, ClientToServerEvents> => {
      const socket: Socket<ServerToClientEvents, ClientToServerEvents> = connectClient(proxy.url, {
        auth: device.socketAuth,
        transports: ["websocket"],
        forceNew: true,
        reconnectionDelay: 50,
        reconnectionDelayMax: 200,
      });
      socket.io.on("reconnect", () => reconnects++);
      sockets.push(socket);
      return socket;
    };
    try {
      const bob = await registerDevice(proxy.url);
      const senders = await Promise.all(Array.from({ length: 6 }, () => registerDevice(proxy.url)));
      for (const s of senders) await startSessionAt(proxy.url, s, bob);

      // Bob receives through the proxy and acknowledges what he gets; he keeps every id he saw.
      const seen = new Set<string>();
      const bobSocket = connect(bob);
      bobSocket.on("envelopes", (batch: Envelope[], confirm?: () => void) => {
        for (const e of batch) seen.add(e.id);
        confirm?.();
        bobSocket.emit("ack", { ids: batch.map((e) => e.id) }, () => undefined);
      });

      // Each sender sends over its own socket (spread over the nodes by the proxy) until stopped.
      const acknowledged = new Set<string>();
      let refused = 0;
      let stopped = false;
      const loops = senders.map(async (sender) => {
        const socket = connect(sender);
        let sent = 0;
        while (!stopped && sent < 400) {
          if (!socket.connected) {
            await new Promise((resolve) => setTimeout(resolve, 20));
            continue;
          }
          const messages = await encryptFor(
            sender,
            { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
            `m${sent}`,
          );
          try {
            const result = (await socket
              .timeout(3000)
              .emitWithAck("send", { destination: bob.uuid, messages })) as SocketResult<SendMessagesResponse>;
            if (result.ok) for (const e of result.value.envelopes) acknowledged.add(e.id);
            else refused++;
          } catch {
            // No answer (the node died): not acknowledged, so not counted; the next send goes over the new connection.
          }
          sent++;
        }
      });

      const victim = cluster.nodes[1]!;
      await until(() => acknowledged.size >= 60, "sends before the kill");
      victim.child.kill("SIGKILL");
      assert.equal((await victim.exited).signal, "SIGKILL");
      const atKill = acknowledged.size;
      try {
        await until(() => acknowledged.size >= atKill + 120, "sends after the kill");
      } finally {
        stopped = true;
      }
      await Promise.all(loops);
      assert.equal(refused, 0);
      assert.ok(reconnects > 0, "no client was on the killed node");
      assert.ok(
        sockets.every((s) => s.connected),
        "every client reconnected",
      );

      // Everything the server acknowledged reaches Bob (live, or drained on a fresh connection).
      bobSocket.close();
      const drain = await connectDevice(proxy.url, bob);
      await drain.queueEmpty;
      for (const e of drain.received) seen.add(e.id);
      drain.close();
      const lost = [...acknowledged].filter((id) => !seen.has(id));
      assert.deepEqual(lost, [], `${lost.length} of ${acknowledged.size} acknowledged envelopes lost`);
    } finally {
      for (const s of sockets) s.close();
      await proxy.close();
    }
  });
});
