/**
 * Attachments across servers, end to end: two real `zimchat serve`
 * processes federating on loopback (club, news), real clients on SQLite
 * stores. A file stays on its sender's server; the receiver's device records
 * that server with the pointer and downloads it through its own homeserver
 * (`GET /v1/federation/{server}/attachments/{id}`), with the same checks as
 * a local download. The terminal chat's `download` does the same.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { ApiError, AttachmentError, AttachmentFailureReason, type ZimClient } from "../src/index.js";
import { inbox, registerDevice, until } from "@zimchat/testing/spawn";
import { cli, ok, only } from "./support/chat-cli.js";
import { federatedHomeserver, type FederatedHomeserver } from "./support/federation.js";

describe("federation: attachments stored on the sender's server", () => {
  let club: FederatedHomeserver;
  let news: FederatedHomeserver;
  const closing: ZimClient[] = [];
  const dir = mkdtempSync(join(tmpdir(), "zimchat-federation-attachments-"));
  before(async () => {
    [club, news] = await Promise.all([federatedHomeserver(), federatedHomeserver()]);
  });
  after(async () => {
    for (const client of closing) await client.close().catch(() => undefined);
    await Promise.all([club?.stop(), news?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("alice@club sends bob@news a file: he downloads it from club, bytes equal, checks as locally", async () => {
    const options = { sendReceipts: false };
    const alice = await registerDevice(club.url, undefined, options);
    const bob = await registerDevice(news.url, undefined, options);
    closing.push(alice, bob);
    const original = randomBytes(200_000);
    const path = join(dir, "report.bin");
    writeFileSync(path, original);

    const sent = await alice.sendAttachment(`${bob.local.username}@${news.name}`, path, {
      fileName: "report.bin",
      caption: "The report",
    });
    assert.equal("server" in sent.attachment, false, "the sender's own pointer: her homeserver stores it");
    const toBob = inbox(bob);
    await bob.connect();
    const [message] = await until(toBob, 1);
    assert.equal(message?.fromServer, club.name);
    assert.equal(message?.text, "The report");
    const pointer = message?.attachment;
    assert.ok(pointer, "the pointer arrived");
    assert.deepEqual(pointer, { ...sent.attachment, server: club.name }, "recorded with the server that stores it");
    // Recorded in the store too, so a later download does not depend on the binding.
    const [stored] = await bob.conversation(alice.local.uuid, 10);
    assert.equal(stored?.attachment?.server, club.name);

    assert.ok((await bob.downloadAttachment(pointer)).equals(original), "in memory, byte-identical");
    const saved = join(dir, "bob-report.bin");
    await bob.downloadAttachment(stored!.attachment!, saved);
    assert.ok(readFileSync(saved).equals(original), "to a file, byte-identical");
    assert.deepEqual(
      readdirSync(dir)
        .filter((n) => n.startsWith("bob-report.bin"))
        .sort(),
      ["bob-report.bin"],
      "no temporary file left",
    );

    // The digest is checked before decryption, the GCM tag after, as for a local download; nothing is written.
    const otherDigest = { ...pointer, digest: randomBytes(32).toString("base64") };
    await assert.rejects(
      bob.downloadAttachment(otherDigest, join(dir, "swapped.bin")),
      (e: unknown) => e instanceof AttachmentError && e.reason === AttachmentFailureReason.DigestMismatch,
    );
    const otherKey = { ...pointer, key: randomBytes(32).toString("base64") };
    await assert.rejects(
      bob.downloadAttachment(otherKey),
      (e: unknown) => e instanceof AttachmentError && e.reason === AttachmentFailureReason.DecryptionFailed,
    );
    assert.equal(
      readdirSync(dir).some((n) => n.startsWith("swapped.bin")),
      false,
    );
    // Club's 404 comes back as news's own; a pointer without its server is looked for on news, which lacks it.
    await assert.rejects(
      bob.downloadAttachment({ ...pointer, id: "a".repeat(pointer.id.length) }),
      (e: unknown) => e instanceof ApiError && e.status === 404,
    );
    const { server: _, ...withoutServer } = pointer;
    await assert.rejects(
      bob.downloadAttachment(withoutServer),
      (e: unknown) => e instanceof ApiError && e.status === 404,
    );
  });

  it("a group file: each member downloads it from its sender's server, whichever server they are on", async () => {
    const options = { sendReceipts: false };
    const alice = await registerDevice(club.url, undefined, options);
    const dave = await registerDevice(club.url, undefined, options);
    const bob = await registerDevice(news.url, undefined, options);
    closing.push(alice, dave, bob);
    const inboxes = { alice: inbox(alice), dave: inbox(dave), bob: inbox(bob) };
    await Promise.all([alice.connect(), dave.connect(), bob.connect()]);
    const group = await alice.createGroup("Files", [dave.local.username, `${bob.local.username}@${news.name}`]);

    // Alice's file (on club): bob@news downloads it through news, dave from club directly.
    const fromAlice = randomBytes(50_000);
    await alice.sendGroupAttachment(group.id, fromAlice, { fileName: "a.bin", caption: "from club" });
    const [atBob] = await until(inboxes.bob, 1);
    assert.equal(atBob?.group, group.id);
    assert.equal(atBob?.attachment?.server, club.name);
    assert.ok((await bob.downloadAttachment(atBob!.attachment!)).equals(fromAlice));
    const [atDave] = await until(inboxes.dave, 1);
    assert.equal(atDave?.attachment?.server, undefined, "stored on dave's own server");
    assert.ok((await dave.downloadAttachment(atDave!.attachment!)).equals(fromAlice));

    // Bob's file (on news): alice and dave on club download it through club, to a file.
    const fromBob = randomBytes(70_000);
    await bob.sendGroupAttachment(group.id, fromBob, { fileName: "b.bin", caption: "from news" });
    for (const [name, client] of [
      ["alice", alice],
      ["dave", dave],
    ] as const) {
      const received = await until(inboxes[name], name === "dave" ? 2 : 1);
      const message = received.find((m) => m.text === "from news");
      assert.equal(message?.fromServer, news.name);
      assert.equal(message?.attachment?.server, news.name, `${name} records news as the file's server`);
      const out = join(dir, `${name}-b.bin`);
      await client.downloadAttachment(message!.attachment!, out);
      assert.ok(readFileSync(out).equals(fromBob), `${name}'s copy is byte-identical`);
    }
  });

  it("the terminal chat: send-file to name@server, and download on the other server", async () => {
    const as = (name: string, ...args: string[]): string[] => [...args, "--profile", join(dir, name), "--json"];
    ok(await cli(as("carol", "register", "--server", club.url, "--username", "carol")));
    ok(await cli(as("dudu", "register", "--server", news.url, "--username", "dudu")));
    const original = randomBytes(120_000);
    const path = join(dir, "minutes.bin");
    writeFileSync(path, original);
    const [sent] = only(ok(await cli(as("carol", "send-file", `dudu@${news.name}`, path))), "fileSent");
    assert.equal(sent?.to, `dudu@${news.name}`);
    const [message] = only(ok(await cli(as("dudu", "receive"))), "message");
    assert.equal(message?.from, `carol@${club.name}`);
    assert.deepEqual(message?.attachment, { fileName: "minutes.bin", size: original.length });
    const id = String(message?.envelopeId);
    const out = join(dir, "dudu-minutes.bin");
    const [saved] = ok(await cli(as("dudu", "download", id, "--out", out)));
    assert.deepEqual(saved, {
      type: "downloaded",
      messageId: id,
      path: out,
      size: original.length,
      fileName: "minutes.bin",
    });
    assert.ok(readFileSync(out).equals(original), "the download is byte-identical");

    // A message kept before pointers recorded their server: the author's server binding finds it.
    const db = new BetterSqlite3(join(dir, "dudu", "device.db"));
    try {
      const row = db.prepare("SELECT attachment FROM messages WHERE id = ?").get(id) as { attachment: string };
      const { server, ...old } = JSON.parse(row.attachment) as { server?: string };
      assert.equal(server, club.name, "recorded when it arrived");
      db.prepare("UPDATE messages SET attachment = ? WHERE id = ?").run(JSON.stringify(old), id);
    } finally {
      db.close();
    }
    const older = join(dir, "dudu-minutes-old.bin");
    ok(await cli(as("dudu", "download", id, "--out", older)));
    assert.ok(readFileSync(older).equals(original), "an older pointer downloads too");
  });
});
