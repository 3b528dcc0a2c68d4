import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Envelope } from "@zimchat/protocol";
import {
  DecryptionFailureReason,
  FederationUnavailableError,
  MemoryDeviceStore,
  ServerBindingError,
  SqliteDeviceStore,
  type DeviceStore,
  type ServerBindingRefusedEvent,
  type ZimClient,
  type ZimClientEvents,
} from "../src/index.js";
import { inbox, registerDevice, startHomeserver, until, type Homeserver } from "@zimchat/testing/spawn";

/** Collects one event's payloads. */
function collect<K extends keyof ZimClientEvents>(client: ZimClient, event: K): ZimClientEvents[K][0][] {
  const out: ZimClientEvents[K][0][] = [];
  client.on(event, ((payload: ZimClientEvents[K][0]) => out.push(payload)) as never);
  return out;
}

/** The envelopes waiting for a device, fetched over REST (not acknowledged: the server keeps them). */
async function waiting(client: ZimClient, count: number): Promise<Envelope[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { envelopes } = await client.api.fetchMessages();
    if (envelopes.length >= count) return envelopes;
    if (Date.now() > deadline) throw new Error(`only ${envelopes.length} of ${count} envelopes arrived`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A copy of an envelope as a lying server could relabel it: a new id, and the origin server it claims. */
const relabeled = (envelope: Envelope, sourceServer: string | undefined): Envelope => {
  const { sourceServer: _, ...rest } = envelope;
  return { ...rest, id: randomUUID(), ...(sourceServer ? { sourceServer } : {}) };
};

describe("server bindings in the store: one server per account id, never replaced", () => {
  const dir = mkdtempSync(join(tmpdir(), "zimchat-bindings-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [name, open] of [
    ["SqliteDeviceStore", (): DeviceStore => new SqliteDeviceStore(join(dir, "bindings.db"))],
    ["MemoryDeviceStore", (): DeviceStore => new MemoryDeviceStore()],
  ] as const) {
    it(`${name}: the first binding wins, a second one is answered with the first, and a rollback undoes a new one`, async () => {
      const store = open();
      const uuid = randomUUID();
      assert.equal(store.getServerBinding(uuid), null);
      assert.equal(store.bindServer(uuid, "news.example", 1), "news.example");
      assert.equal(store.bindServer(uuid, "evil.example", 2), "news.example", "the first binding stays");
      assert.equal(store.bindServer(uuid, "", 3), "news.example");
      assert.equal(store.getServerBinding(uuid), "news.example");

      const local = randomUUID();
      assert.equal(store.bindServer(local, "", 4), "");
      assert.equal(store.getServerBinding(local), "", "this homeserver's accounts are bound to it too");

      const rolledBack = randomUUID();
      await assert.rejects(
        store.transaction(async () => {
          store.bindServer(rolledBack, "news.example", 5);
          assert.equal(store.getServerBinding(rolledBack), "news.example");
          throw new Error("decryption failed");
        }),
      );
      assert.equal(store.getServerBinding(rolledBack), null, "a binding made in a failed transaction is gone");
      store.close();
    });
  }

  it("SqliteDeviceStore: bindings survive a restart", () => {
    const path = join(dir, "restart.db");
    const uuid = randomUUID();
    const first = new SqliteDeviceStore(path);
    first.bindServer(uuid, "club.example:8443", 1);
    first.close();
    const second = new SqliteDeviceStore(path);
    assert.equal(second.getServerBinding(uuid), "club.example:8443");
    assert.equal(second.bindServer(uuid, "news.example", 2), "club.example:8443");
    second.close();
  });
});

describe("server bindings in the client: a server claiming another server's account is refused", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("an envelope whose sourceServer contradicts the binding is refused before decryption; the genuine one still decrypts", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    try {
      // Alice looked Bob up on her homeserver: he is bound to it.
      assert.equal(await alice.resolve(bob.local.username), bob.local.uuid);
      assert.equal(alice.store.getServerBinding(bob.local.uuid), "");
      assert.equal(alice.serverOf(bob.local.uuid), null);

      await bob.sendText(alice.local.uuid, "the real Bob");
      const [genuine] = await waiting(alice, 1);
      assert.ok(genuine);
      const messages = inbox(alice);
      const failures = collect(alice, "decryptionFailed");
      const refusals = collect(alice, "serverBindingRefused");

      // A server relays Bob's ciphertext as if he were a user of evil.example.
      await alice.processEnvelopes([relabeled(genuine, "evil.example")]);
      assert.equal(messages.length, 0, "nothing was shown as Bob");
      assert.equal(failures.length, 1);
      assert.equal(failures[0]?.reason, DecryptionFailureReason.ServerMismatch);
      assert.equal(failures[0]?.from, bob.local.uuid);
      assert.ok(failures[0]?.error instanceof Error);
      assert.deepEqual(
        refusals.map(({ envelopeId: _, ...r }) => r),
        [{ uuid: bob.local.uuid, boundTo: null, claimed: "evil.example" } satisfies ServerBindingRefusedEvent],
      );
      assert.equal(alice.store.getServerBinding(bob.local.uuid), "", "the binding did not move");

      // Not decrypted: the PreKey message's one-time key and the session are untouched, so the genuine envelope opens.
      await alice.processEnvelopes([genuine]);
      assert.equal(messages.length, 1);
      assert.equal(messages[0]?.text, "the real Bob");
      assert.equal(messages[0]?.fromServer, undefined);
    } finally {
      await alice.close();
      await bob.close();
    }
  });

  it("an account first met through another server is bound there: later envelopes without sourceServer are refused", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const carol = await registerDevice(server.url, undefined, { sendReceipts: false });
    try {
      await carol.sendText(alice.local.uuid, "hello from news.example");
      const [first] = await waiting(alice, 1);
      assert.ok(first);
      const messages = inbox(alice);
      const failures = collect(alice, "decryptionFailed");
      const refusals = collect(alice, "serverBindingRefused");

      // Never seen before: the envelope's origin binds the account (Carol as a user of news.example).
      await alice.processEnvelopes([relabeled(first, "news.example")]);
      assert.equal(messages.length, 1);
      assert.equal(messages[0]?.text, "hello from news.example");
      assert.equal(messages[0]?.fromServer, "news.example");
      assert.equal(alice.serverOf(carol.local.uuid), "news.example");
      assert.equal(alice.store.getServerBinding(carol.local.uuid), "news.example");
      // No name is known for her there (the claim cannot be checked through a homeserver that does not federate).
      assert.equal(alice.addressOf(carol.local.uuid), `${carol.local.uuid}@news.example`);
      assert.equal(messages[0]?.senderName?.verified, false);
      assert.equal(messages[0]?.senderName?.username, `${carol.local.username}@news.example`);

      // The home server now presents the same account as its own user: refused.
      await carol.sendText(alice.local.uuid, "second");
      const envelopes = await waiting(alice, 2);
      const second = envelopes.find((e) => e.id !== first.id)!;
      await alice.processEnvelopes([second]);
      assert.equal(messages.length, 1, "not shown");
      assert.equal(failures.at(-1)?.reason, DecryptionFailureReason.ServerMismatch);
      assert.deepEqual(
        refusals.map(({ envelopeId: _, ...r }) => r),
        [{ uuid: carol.local.uuid, boundTo: "news.example", claimed: null }],
      );

      // A look-up on this homeserver that answers with her account id is refused too.
      await assert.rejects(alice.resolve(carol.local.username), (error: unknown) => {
        assert.ok(error instanceof ServerBindingError);
        assert.equal(error.boundTo, "news.example");
        assert.equal(error.claimed, null);
        return true;
      });
      assert.equal(refusals.length, 2);
    } finally {
      await alice.close();
      await carol.close();
    }
  });

  it("name@server: refused while the homeserver does not federate, except for the homeserver itself", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    try {
      assert.equal(await alice.homeServerName(), null, "this homeserver publishes no server document");
      await assert.rejects(alice.resolve(`${bob.local.username}@news.example`), (error: unknown) => {
        assert.ok(error instanceof FederationUnavailableError);
        assert.match(error.message, /does not federate/);
        return true;
      });
      await assert.rejects(alice.sendText("bob@news.example", "hi"), FederationUnavailableError);
      await assert.rejects(alice.resolve("not a name@news.example"), FederationUnavailableError);
      await assert.rejects(alice.resolve("bob@Not_A_Server"), FederationUnavailableError);
      // The homeserver's own host names its own users.
      const host = new URL(server.url).host;
      assert.equal(await alice.resolve(`${bob.local.username}@${host}`), bob.local.uuid);
      assert.equal(alice.serverOf(bob.local.uuid), null);
    } finally {
      await alice.close();
      await bob.close();
    }
  });

  it("a look-up answer naming an account bound to another server is refused (a homeserver lying about a remote user)", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    try {
      // The homeserver claims to federate as club.example and answers a remote look-up with its own user Bob.
      alice.api.serverDocument = async () => ({
        server: "club.example",
        identityKey: Buffer.alloc(32).toString("base64"),
        keys: [
          {
            id: "ed25519:0000000000000000",
            alg: "ed25519",
            publicKey: Buffer.alloc(32).toString("base64"),
            validUntil: Date.now() + 60_000,
          },
        ],
        trustRoot: Buffer.alloc(33).toString("base64"),
        validUntil: Date.now() + 60_000,
        signature: { keyId: "ed25519:0000000000000000", sig: Buffer.alloc(64).toString("base64") },
      });
      alice.api.remoteLookupUsername = async () => ({ uuid: bob.local.uuid });
      assert.equal(await alice.homeServerName(), "club.example");
      assert.equal(await alice.resolve(bob.local.username), bob.local.uuid);
      const refusals = collect(alice, "serverBindingRefused");
      await assert.rejects(alice.resolve("dave@news.example"), ServerBindingError);
      assert.deepEqual(refusals, [{ uuid: bob.local.uuid, boundTo: null, claimed: "news.example" }]);
      assert.equal(alice.store.getValue("username:dave@news.example"), null, "the answer was not kept");
      // Its own name means its own users.
      assert.equal(await alice.resolve(`${bob.local.username}@club.example`), bob.local.uuid);
    } finally {
      await alice.close();
      await bob.close();
    }
  });

  it("safety numbers are the same for an account whatever server it is bound to (sessions by account id)", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url, undefined, { sendReceipts: false });
    const toBob = inbox(bob);
    try {
      await bob.connect();
      await alice.sendText(bob.local.username, "hi");
      await until(toBob, 1);
      const fromAlice = await alice.safetyNumber(bob.local.username);
      const fromBob = await bob.safetyNumber(alice.local.uuid);
      assert.equal(fromAlice.digits, fromBob.digits);
    } finally {
      await alice.close();
      await bob.close();
    }
  });
});
