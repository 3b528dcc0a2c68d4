import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  ProtocolAddress,
  groupDecrypt,
  sealedSenderDecryptToUsmc,
  CiphertextMessageType,
} from "@signalapp/libsignal-client";
import type { Envelope } from "@zimchat/protocol";
import {
  DecryptionFailureReason,
  type GroupUpdatedEvent,
  type MessageEvent,
  type ZimClient,
  type ZimClientEvents,
} from "../src/index.js";
import { signalStores } from "../src/store/signal-stores.js";
import { trustOnFirstUse } from "../src/trust.js";
import { type Homeserver, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";
import { linkDevice } from "./support/linking.js";
import { queryServerDb } from "./support/server-db.js";

/** Every `message` and `groupUpdated` event of a device. */
function record(client: ZimClient): {
  messages: MessageEvent[];
  updates: GroupUpdatedEvent[];
  failures: ZimClientEvents["decryptionFailed"][0][];
} {
  const log = {
    messages: [] as MessageEvent[],
    updates: [] as GroupUpdatedEvent[],
    failures: [] as ZimClientEvents["decryptionFailed"][0][],
  };
  client.on("message", (m) => log.messages.push(m));
  client.on("groupUpdated", (u) => log.updates.push(u));
  client.on("decryptionFailed", (f) => log.failures.push(f));
  return log;
}

/** The sender-key ciphertext inside a sealed group envelope, unsealed with the recipient's own store. */
async function innerSenderKeyMessage(
  recipient: ZimClient,
  envelopes: Envelope[],
): Promise<{ sender: ProtocolAddress; message: Uint8Array<ArrayBuffer> }> {
  const stores = signalStores(recipient.store, trustOnFirstUse, () => {});
  for (const envelope of envelopes.filter((e) => e.type === "sealed")) {
    const usmc = await sealedSenderDecryptToUsmc(
      new Uint8Array(Buffer.from(envelope.content, "base64")) as Uint8Array<ArrayBuffer>,
      stores.identities,
    );
    if (usmc.msgType() !== CiphertextMessageType.SenderKey) continue; // a pairwise message (the new sender key)
    const certificate = usmc.senderCertificate();
    return {
      sender: ProtocolAddress.new(certificate.senderUuid(), certificate.senderDeviceId()),
      message: usmc.contents(),
    };
  }
  throw new Error("no sender-key message among the envelopes");
}

/** Whether `member`'s store can open a sender-key message (libsignal directly, as a removed member would try). */
async function canRead(
  member: ZimClient,
  inner: { sender: ProtocolAddress; message: Uint8Array<ArrayBuffer> },
): Promise<boolean> {
  const stores = signalStores(member.store, trustOnFirstUse, () => {});
  try {
    await groupDecrypt(inner.sender, stores.senderKeys, inner.message);
    return true;
  } catch {
    return false;
  }
}

describe("groups", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("a 10-member group (three members on two devices) exchanges messages with one multi-recipient upload each", async () => {
    const members: ZimClient[] = [];
    for (let i = 0; i < 10; i++) members.push(await registerDevice(server.url));
    const seconds: ZimClient[] = [];
    for (const m of members.slice(1, 4)) seconds.push(await linkDevice(server.url, m));
    const devices = [...members, ...seconds];
    const logs = new Map(devices.map((d) => [d, record(d)]));
    for (const d of devices) await d.connect();

    const [admin, ...others] = members as [ZimClient, ...ZimClient[]];
    const group = await admin.createGroup(
      "clinic rota",
      others.map((m) => m.local.username),
    );
    for (const d of devices.filter((d) => d !== admin)) await until(logs.get(d)!.updates, 1);

    // Each member writes once: one upload reaches every device of every other member.
    for (const [i, m] of members.entries()) {
      const { response } = await m.sendGroupText(group.id, `hello from ${i}`);
      const envelopes = response.recipients.flatMap((r) => r.envelopes);
      assert.equal(response.recipients.length, 9, "one upload, nine recipients");
      const expected = 9 + seconds.filter((s) => s.local.uuid !== m.local.uuid).length;
      assert.equal(envelopes.length, expected, "one envelope per recipient device");
    }
    for (const d of devices) {
      const received = logs.get(d)!.messages.filter((m) => m.group === group.id && !m.outgoing);
      await until(received, 9).catch(() => {});
      const all = logs.get(d)!.messages.filter((m) => m.group === group.id && !m.outgoing);
      assert.equal(all.length, 9, `device ${d.local.username}.${d.local.deviceId} got every other member's message`);
      assert.ok(all.every((m) => m.sealed && m.from !== d.local.uuid));
    }
    // A second device shows its account's own group message as sent.
    const second = seconds[0]!;
    await until(
      logs.get(second)!.messages.filter((m) => m.outgoing),
      1,
    ).catch(() => {});
    assert.ok(logs.get(second)!.messages.some((m) => m.outgoing && m.group === group.id && m.text === "hello from 1"));
    const rows = await queryServerDb<{ n: number }>(
      server,
      `SELECT COUNT(*) AS n FROM "Envelope" WHERE "type" <> 6 OR "sourceAccountId" IS NOT NULL`,
    );
    assert.equal(Number(rows[0]!.n), 0, "nothing queued carries a sender");

    // Removal: the removed member is told, every remaining member's next message uses a new sender key.
    const removed = members[9]!;
    const reader = members[5]!;
    const writer = members[3]!;
    // Both offline, so neither has used this message's key yet when the ciphertext is tried.
    reader.disconnect();
    removed.disconnect();
    await writer.sendGroupText(group.id, "before removal");
    const beforeInner = await innerSenderKeyMessage(reader, (await reader.api.fetchMessages()).envelopes);
    assert.ok(await canRead(removed, beforeInner), "a member reads the group's messages (the check below can fail)");
    await reader.poll();

    await admin.removeGroupMembers(group.id, [removed.local.username]);
    await removed.connect();
    await until(logs.get(removed)!.updates, 2);
    assert.equal(logs.get(removed)!.updates[1]!.left, true);
    for (const d of devices.filter((d) => d !== admin && d !== removed && d !== reader))
      await until(logs.get(d)!.updates, 2);
    await reader.poll();

    const beforeCount = logs.get(removed)!.messages.length;
    await writer.sendGroupText(group.id, "after removal");
    const inner = await innerSenderKeyMessage(reader, (await reader.api.fetchMessages()).envelopes);
    assert.equal(
      await canRead(removed, inner),
      false,
      "the removed member's keys cannot open what is sent after the removal",
    );
    await reader.poll();
    assert.ok(
      logs.get(reader)!.messages.some((m) => m.text === "after removal"),
      "remaining members read it",
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(logs.get(removed)!.messages.length, beforeCount, "and the removed member is not sent it at all");
    await assert.rejects(removed.sendGroupText(group.id, "still here?"), /not a member/);

    for (const d of devices) await d.close();
  });

  it("a sender-key message from a non-member is refused", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const mallory = await registerDevice(server.url);
    const bobLog = record(bob);
    await bob.connect();
    const group = await alice.createGroup("book club", [bob.local.username]);
    await until(bobLog.updates, 1);
    // Mallory learned the group id and writes herself into her own copy of the state.
    mallory.store.setValue(
      `group:${group.id}`,
      JSON.stringify({ ...group, members: [...group.members, mallory.local.uuid] }),
    );
    await mallory.sendGroupText(group.id, "forged");
    await until(bobLog.failures, 1);
    assert.equal(bobLog.failures[0]!.reason, DecryptionFailureReason.NotAGroupMember);
    assert.equal(bobLog.failures[0]!.from, mallory.local.uuid);
    assert.ok(!bobLog.messages.some((m) => m.text === "forged"));

    // Nor can a member who is not an admin change the group.
    const carolsChange = { ...group, title: "hijacked", revision: group.revision + 1 };
    await (bob as unknown as { sendContent(uuid: string, content: object): Promise<unknown> }).sendContent(
      alice.local.uuid,
      { v: 1, timestamp: Date.now(), groupUpdate: carolsChange },
    );
    const aliceLog = record(alice);
    await alice.poll();
    assert.equal(aliceLog.failures[0]?.reason, DecryptionFailureReason.NotAGroupMember);
    assert.equal(alice.group(group.id)?.title, "book club");
    await alice.close();
    await bob.close();
    await mallory.close();
  });
});
