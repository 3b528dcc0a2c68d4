/**
 * A credential-free multi-recipient send naming
 * ~1,000 made-up recipients must be refused (401) before any per-recipient
 * work, on REST and on the `/sealed` socket. Drives a real `zimchat serve`
 * child process and reads its CPU time and RSS from /proc.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { PrivateKey, ProtocolAddress, SenderCertificate, ServerCertificate } from "@signalapp/libsignal-client";
import type { PreKeyBundleResponse, SealedClientToServerEvents } from "@zimchat/protocol";
import type { Socket } from "socket.io-client";
import { callJson, startChildServer, type ChildServer } from "../support/child-server.js";
import { freshDatabase } from "../support/harness.js";
import { sealedSocket } from "../support/sealed.js";
import { SignalDevice } from "@zimchat/testing/signal";

const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
const clockTicks = 100; // USER_HZ on Linux

/** CPU milliseconds (user + system) and RSS bytes of a process, from /proc. */
function usage(pid: number): { cpuMs: number; rss: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the command: state(0) ... utime(11) stime(12) ... rss(21) in pages.
  const cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  return { cpuMs, rss: Number(fields[21]) * 4096 };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * A real `sealedSenderMultiRecipientEncrypt` body to `count` made-up
 * recipients (one device each), with a group message of `plaintextBytes`.
 */
async function floodMessage(count: number, plaintextBytes: number): Promise<Uint8Array> {
  const sender = new SignalDevice();
  sender.uuid = randomUUID();
  const fake = new SignalDevice();
  const trustRoot = PrivateKey.generate();
  const serverKey = PrivateKey.generate();
  const serverCert = ServerCertificate.new(1, serverKey.getPublicKey(), trustRoot);
  const certificate = SenderCertificate.new(
    sender.uuid,
    null,
    1,
    sender.identity.getPublicKey(),
    Date.now() + 86_400_000,
    serverCert,
    serverKey,
  );
  const bundle: PreKeyBundleResponse = {
    identityKey: b64(fake.identity.getPublicKey().serialize()),
    devices: [
      {
        deviceId: 1,
        registrationId: fake.registrationId,
        signedPreKey: fake.signedPreKey(),
        pqPreKey: fake.kyberPreKey(),
      },
    ],
  } as PreKeyBundleResponse;
  const addresses: ProtocolAddress[] = [];
  for (let i = 0; i < count; i++) {
    const uuid = randomUUID();
    await sender.processBundle(uuid, bundle);
    addresses.push(ProtocolAddress.new(uuid, 1));
  }
  return sender.sealedMultiEncrypt(addresses, randomUUID(), "x".repeat(plaintextBytes), certificate);
}

describe("multi-recipient sends without credentials are refused before per-recipient work", () => {
  const db = freshDatabase();
  const args = ["--data-dir", db.dataDir, "--database-url", db.url, "--registration", "open", "--log-level", "warn"];
  let server: ChildServer;
  let honest: SignalDevice;
  let body: string;

  before(async () => {
    server = await startChildServer(args);
    honest = new SignalDevice();
    const res = await callJson(server.url, "POST", "/v1/accounts", honest.registration("honest_user"));
    assert.equal(res.status, 201);
    honest.uuid = res.body.uuid;
    const message = await floodMessage(1000, 1_350_000);
    assert.ok(message.length > 1_400_000 && message.length <= 1536 * 1024, `message is ${message.length} bytes`);
    body = JSON.stringify({ message: b64(message) });
  });
  after(async () => {
    server.child.kill("SIGKILL");
    await server.exited;
    await db.drop();
  });

  /** One honest authenticated request; its latency in ms. */
  async function honestLatency(): Promise<number> {
    const start = performance.now();
    const res = await callJson(server.url, "GET", "/v1/keys/count", undefined, honest.authHeader);
    assert.equal(res.status, 200);
    return performance.now() - start;
  }

  async function restAttack(): Promise<void> {
    const res = await fetch(`${server.url}/v1/messages/multi-recipient`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body,
    });
    await res.arrayBuffer();
    assert.equal(res.status, 401);
  }

  async function socketAttack(socket: Socket<Record<string, never>, SealedClientToServerEvents>): Promise<void> {
    const result = await socket.timeout(20_000).emitWithAck("send-multi", JSON.parse(body));
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.error.code, "unauthorized");
  }

  /** Runs `attack` `rounds` times, two at a time, while an honest user polls; returns the figures. */
  async function measure(
    rounds: number,
    attack: () => Promise<void>,
  ): Promise<{ cpuPerRequestMs: number; rssGrowth: number; honestMs: number }> {
    const baseline: number[] = [];
    for (let i = 0; i < 7; i++) baseline.push(await honestLatency());
    const pid = server.child.pid!;
    const before = usage(pid);
    let peakRss = before.rss;
    const during: number[] = [];
    let attacking = true;
    const poller = (async () => {
      while (attacking) {
        during.push(await honestLatency());
        peakRss = Math.max(peakRss, usage(pid).rss);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const deadline = Date.now() + 20_000;
    for (let i = 0; i < rounds && Date.now() < deadline; i += 2) await Promise.all([attack(), attack()]);
    attacking = false;
    await poller;
    const afterUsage = usage(pid);
    peakRss = Math.max(peakRss, afterUsage.rss);
    const figures = {
      cpuPerRequestMs: (afterUsage.cpuMs - before.cpuMs) / rounds,
      rssGrowth: peakRss - before.rss,
      honestMs: median(during),
      baselineMs: median(baseline),
    };
    console.log(`multi-recipient flood: ${JSON.stringify(figures)}`);
    assert.ok(during.length >= 3, "the honest user got answers during the attack");
    // Generous bounds for a busy 2-core machine; today's code spends seconds and ~1 GB per request.
    assert.ok(figures.cpuPerRequestMs < 150, `server CPU per refused request ${figures.cpuPerRequestMs} ms`);
    assert.ok(figures.rssGrowth < 150 * 1024 * 1024, `server RSS grew ${Math.round(figures.rssGrowth / 1048576)} MiB`);
    // Two attackers back to back saturate one event loop; the honest request waits behind at most a few
    // ~40 ms refusals (before the fix: seconds).
    assert.ok(
      figures.honestMs < Math.max(10 * figures.baselineMs, 400),
      `honest latency ${figures.honestMs} ms (baseline ${figures.baselineMs} ms)`,
    );
    return figures;
  }

  it("PUT /v1/messages/multi-recipient to 1,000 made-up recipients: 401, cheap, honest users unaffected", async () => {
    await measure(10, restAttack);
  });

  it("send-multi on /sealed to 1,000 made-up recipients: unauthorized, cheap, honest users unaffected", async () => {
    const socket = await sealedSocket(server);
    try {
      await measure(10, () => socketAttack(socket));
    } finally {
      socket.close();
    }
  });
});
