/**
 * Retried sends must not duplicate: the real `zimchat serve` is killed
 * with SIGKILL several times while real SDK clients send (1:1 sealed, 1:1
 * authenticated, and group multi-recipient), and is restarted on the same
 * port and database. The clients reach it through a proxy that passes the
 * server's answers on 100 ms late and loses them when the server dies (an
 * answer lost in flight after the commit: the case that duplicates). Senders
 * behave like an app: a send that throws is sent again. Every message must
 * be shown exactly once at the recipient, and none may be lost.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ZimClient } from "../src/index.js";
import { freePort, type Homeserver, inbox, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";
import { startLossyProxy, type LossyProxy } from "./support/lossy-proxy.js";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe("sends across server crashes", () => {
  let server: Homeserver;
  let proxy: LossyProxy;
  before(async () => {
    const port = await freePort();
    server = await startHomeserver(["--port", String(port), "--log-level", "warn"]);
    // Answers reach the clients 100 ms late; at each crash the connections are cut and the held answers lost.
    proxy = await startLossyProxy(port, 100);
  });
  after(async () => {
    await proxy.close();
    await server.stop();
  });

  it(
    "SIGKILL x3 under load with retrying senders: every message is shown exactly once, none lost",
    { timeout: 120_000 },
    async () => {
      // Retries 250 ms to 1 s apart (the default waits up to 2 s): the server is back within seconds here.
      const options = { sendReceipts: false, sendRetry: { maxDelayMs: 1000, attemptTimeoutMs: 10_000 } };
      const bob = await registerDevice(proxy.url, undefined, options);
      const alice = await registerDevice(proxy.url, undefined, options);
      const carol = await registerDevice(proxy.url, undefined, options);
      const dave = await registerDevice(proxy.url, undefined, options);
      const clients: ZimClient[] = [bob, alice, carol, dave];
      const shown = inbox(bob);
      for (const c of clients) await c.connect();
      // Bob writes to Alice first: she learns his access key, so her sends are sealed; Carol's stay authenticated.
      const aliceInbox = inbox(alice);
      await bob.sendText(alice.local.username, "hi alice");
      await until(aliceInbox, 1);
      const group = await dave.createGroup("crash test", [bob.local.username]);

      const perSender = 30;
      const inFlight = 4;
      let sent = 0;
      let appRetries = 0;
      const thrown = new Set<string>();
      /**
       * An app's send loop: up to `inFlight` sends at once; a send that throws is sent again (as today's apps must).
       */
      const sender = async (name: string, send: (text: string) => Promise<unknown>): Promise<string[]> => {
        const texts = Array.from({ length: perSender }, (_, i) => `${name} ${i}`);
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < texts.length) {
            const text = texts[next++]!;
            const giveUp = Date.now() + 30_000;
            for (;;) {
              try {
                // An app gives up on a send that hangs (longer than the SDK's own retries take here) and sends again.
                let timer: NodeJS.Timeout | undefined;
                const timedOut = new Promise(
                  (_, reject) => (timer = setTimeout(() => reject(new Error("send timed out")), 45_000)),
                );
                await Promise.race([send(text), timedOut]).finally(() => clearTimeout(timer));
                sent++;
                break;
              } catch (error) {
                if (Date.now() > giveUp) throw error;
                appRetries++;
                thrown.add(String(error));
                await sleep(200);
              }
            }
          }
        };
        await Promise.all(Array.from({ length: inFlight }, worker));
        return texts;
      };

      const sending = Promise.all([
        sender("alice", (text) => alice.sendText(bob.local.username, text)),
        sender("carol", (text) => carol.sendText(bob.local.username, text)),
        sender("dave", (text) => dave.sendGroupText(group.id, text)),
      ]);
      let kills = 0;
      const progress = process.env.IDEM_DEBUG
        ? setInterval(
            () => console.error(`sent ${sent} kills ${kills} shown ${shown.length} appRetries ${appRetries}`),
            1000,
          )
        : undefined;
      const stopKilling = Date.now() + 40_000;
      const killing = (async () => {
        // Kill while sends are in flight: after some progress, three times.
        for (; kills < 3 && Date.now() < stopKilling;) {
          const target = sent + 12;
          while (sent < target && sent < 3 * perSender - 10 && Date.now() < stopKilling) await sleep(5);
          if (sent >= 3 * perSender - 10) break;
          proxy.cut();
          await server.restart();
          kills++;
        }
      })();
      const expected = await sending.finally(() => clearInterval(progress)).then((lists) => lists.flat());
      await killing;
      assert.ok(kills >= 2, `the server was killed ${kills} times while sending`);

      // Everything arrives (the socket reconnects by itself); then nothing more comes.
      const deadline = Date.now() + 30_000;
      while (new Set(shown.map((m) => m.text)).size < expected.length && Date.now() < deadline) await sleep(50);
      await sleep(1000);
      const counts = new Map<string, number>();
      for (const m of shown) counts.set(m.text, (counts.get(m.text) ?? 0) + 1);
      const lost = expected.filter((t) => !counts.has(t));
      const twice = [...counts].filter(([, n]) => n > 1).map(([t]) => t);
      assert.deepEqual(lost, [], "no message lost");
      assert.deepEqual(
        twice,
        [],
        `every message shown once (${appRetries} sends thrown to the app and sent again: ${[...thrown].join("; ")})`,
      );
      assert.equal(shown.length, expected.length);
      // The stored conversations agree (what the app shows after a restart).
      const stored = [
        ...(await bob.conversation(alice.local.username)),
        ...(await bob.conversation(carol.local.username)),
      ].map((m) => m.text);
      assert.equal(new Set(stored).size, stored.length, "no duplicate in the store");
      for (const c of clients) await c.close();
    },
  );
});
