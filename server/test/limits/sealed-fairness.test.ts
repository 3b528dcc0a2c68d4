/**
 * The sealed-send limit is kept per recipient AND per source address, so one
 * sender holding a recipient's access key cannot use up every other sealed
 * sender's allowance; and the client SDK falls back to an authenticated
 * send when a sealed send is rate limited.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDeviceStore, ZimClient, type MessageEvent } from "@zimchat/client";
import type { SealedClientToServerEvents } from "@zimchat/protocol";
import { io as connectClient, type Socket } from "socket.io-client";
import { roomyRateLimits, startServer, startSession, type TestServer } from "../support/harness.js";
import { certificateFor, setAccess } from "../support/sealed.js";
import type { SignalDevice } from "@zimchat/testing/signal";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const points = 3;

async function sealedSocketFrom(
  server: TestServer,
  address: string,
): Promise<Socket<Record<string, never>, SealedClientToServerEvents>> {
  const socket: Socket<Record<string, never>, SealedClientToServerEvents> = connectClient(`${server.url}/sealed`, {
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    extraHeaders: { "x-forwarded-for": address },
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("connect_error", reject);
  });
  return socket;
}

describe("sealed sending: one sender cannot exhaust a recipient's sealed allowance for others", () => {
  let server: TestServer;
  let alice: SignalDevice;
  let mallory: SignalDevice;
  let bob: SignalDevice;
  let bobKey: Buffer;
  before(async () => {
    // Behind a (loopback) reverse proxy: X-Forwarded-For names the sender's address.
    server = await startServer({
      rateLimits: { ...roomyRateLimits, sealedSend: { points, durationSeconds: 60 } },
      trustProxy: ["loopback"],
    });
    [alice, mallory, bob] = [await server.register(), await server.register(), await server.register()];
    bobKey = await setAccess(server, bob);
    await startSession(server, alice, bob);
    await startSession(server, mallory, bob);
  });
  after(async () => server.stop());

  const sealedBody = async (from: SignalDevice, text: string) => {
    const message = await from.sealedEncrypt(bob.uuid, 1, text, await certificateFor(server, from));
    return { messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] };
  };

  it("REST: the abusive sender gets 429, an honest sender from another address still gets through sealed", async () => {
    const put = async (from: SignalDevice, address: string) =>
      server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Unidentified-Access-Key", b64(bobKey))
        .set("X-Forwarded-For", address)
        .send(await sealedBody(from, "hi"));
    for (let i = 0; i < points; i++) assert.equal((await put(mallory, "203.0.113.66")).status, 200);
    const limited = await put(mallory, "203.0.113.66");
    assert.equal(limited.status, 429, "the abusive sender's own bucket is empty");
    assert.equal(limited.body.code, "rate_limited");
    const honest = await put(alice, "198.51.100.7");
    assert.equal(honest.status, 200, `an honest sealed sender to the same recipient: ${JSON.stringify(honest.body)}`);
  });

  it("/sealed socket: the same, keyed by the socket's (forwarded) address", async () => {
    const abusive = await sealedSocketFrom(server, "203.0.113.99");
    const honest = await sealedSocketFrom(server, "198.51.100.99");
    try {
      const emit = async (socket: typeof abusive, from: SignalDevice) =>
        (await socket.emitWithAck("send", {
          destination: bob.uuid,
          accessKey: b64(bobKey),
          ...(await sealedBody(from, "x")),
        })) as { ok: boolean; status?: number };
      for (let i = 0; i < points; i++) assert.equal((await emit(abusive, mallory)).ok, true);
      const refused = await emit(abusive, mallory);
      assert.equal(refused.ok, false);
      assert.equal(refused.status, 429);
      const ok = await emit(honest, alice);
      assert.equal(ok.ok, true, `honest sealed socket send: ${JSON.stringify(ok)}`);
    } finally {
      abusive.close();
      honest.close();
    }
  });
});

describe("sealed sending: the SDK falls back to an authenticated send on 429", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ rateLimits: { ...roomyRateLimits, sealedSend: { points: 2, durationSeconds: 60 } } });
  });
  after(async () => server.stop());

  it("every message arrives: sealed while the allowance lasts, then authenticated", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zimchat-sealed-fallback-"));
    const make = (name: string) =>
      ZimClient.register({
        serverUrl: server.url,
        username: `${name}_${process.pid}`,
        store: new SqliteDeviceStore(join(dir, `${name}.db`)),
      });
    const alice = await make("alice");
    const bob = await make("bob");
    const toBob: MessageEvent[] = [];
    const toAlice: MessageEvent[] = [];
    bob.on("message", (m) => toBob.push(m));
    alice.on("message", (m) => toAlice.push(m));
    const until = async (list: unknown[], count: number): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while (list.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${list.length} of ${count} arrived`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    try {
      await alice.connect();
      await bob.connect();
      // First contact carries each side's access key.
      await alice.sendText(bob.local.username, "hello");
      await until(toBob, 1);
      await bob.sendText(alice.local.username, "hello back");
      await until(toAlice, 1);
      // Over the sockets (the /sealed namespace), then over REST.
      for (let i = 0; i < 4; i++) await alice.sendText(bob.local.username, `socket ${i}`);
      alice.disconnect();
      for (let i = 0; i < 2; i++) await alice.sendText(bob.local.username, `rest ${i}`);
      await until(toBob, 7);
      assert.deepEqual(
        toBob.slice(1).map((m) => m.text),
        ["socket 0", "socket 1", "socket 2", "socket 3", "rest 0", "rest 1"],
      );
      assert.ok(
        toBob.slice(1).some((m) => m.sealed),
        "sealed while the allowance lasted",
      );
      assert.ok(
        toBob.slice(1).some((m) => !m.sealed),
        "authenticated once the sealed sends were rate limited",
      );
      for (const m of toBob) assert.equal(m.from, alice.local.uuid);
    } finally {
      await alice.close();
      await bob.close();
    }
  });
});
