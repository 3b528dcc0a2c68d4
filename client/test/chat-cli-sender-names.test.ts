import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryDeviceStore, ZimClient } from "../src/index.js";
import { startHomeserver, type Homeserver } from "@zimchat/testing/spawn";
import { cli, ok, only } from "./support/chat-cli.js";

describe("zimchat-chat names senders by their verified username", () => {
  let server: Homeserver;
  let dir: string;
  before(async () => {
    server = await startHomeserver();
    dir = mkdtempSync(join(tmpdir(), "zimchat-cli-names-"));
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a stranger's message shows their username; a false claim shows the account id, marked", async () => {
    const bob = (...args: string[]): string[] => [...args, "--profile", join(dir, "bob")];
    const [registered] = ok(await cli(bob("register", "--server", server.url, "--username", "bob", "--json")));
    const bobUuid = String(registered?.uuid);
    const alice = await ZimClient.register({
      serverUrl: server.url,
      username: "alice",
      store: new MemoryDeviceStore(),
      sendReceipts: false,
    });
    const mallory = await ZimClient.register({
      serverUrl: server.url,
      username: "mallory",
      store: new MemoryDeviceStore(),
      sendReceipts: false,
    });

    await alice.sendText(bobUuid, "Hi Bob, Alice here");
    const [message] = only(ok(await cli(bob("receive", "--json"))), "message");
    assert.equal(message?.from, "alice");
    assert.equal(message?.fromUuid, alice.local.uuid);

    // Mallory's client claims to be Alice, inside its encrypted content.
    const forged = { v: 1, timestamp: Date.now(), text: "It's Alice, new phone", profile: { username: "alice" } };
    await (mallory as unknown as { sendContent(uuid: string, content: object): Promise<unknown> }).sendContent(
      bobUuid,
      forged,
    );
    const text = await cli(bob("receive"));
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      new RegExp(
        `^\\[\\d\\d:\\d\\d\\] ${mallory.local.uuid.slice(0, 8)}… \\(claims "alice", unverified\\): It's Alice, new phone$`,
        "m",
      ),
    );
    assert.doesNotMatch(text.stdout, /\] alice: It's Alice/);
    await alice.close();
    await mallory.close();
  });

  it("a group's members, its changes and its authors (live and in chat history) show verified usernames", async () => {
    const carol = (...args: string[]): string[] => [...args, "--profile", join(dir, "carol")];
    ok(await cli(carol("register", "--server", server.url, "--username", "carol", "--json")));
    const [dave, erin] = await Promise.all(
      ["dave", "erin"].map((username) =>
        ZimClient.register({ serverUrl: server.url, username, store: new MemoryDeviceStore(), sendReceipts: false }),
      ),
    );
    // Carol has never looked anyone up: Dave's claim names him, his word on Erin's username is checked too.
    const group = await dave!.createGroup("Picnic", ["carol", "erin"]);
    const added = await cli(carol("receive"));
    assert.deepEqual(
      [added.code, added.stdout],
      [0, `dave added you to the group Picnic (id ${group.id}). Members: dave, carol, erin.\n`],
    );
    const listed = await cli(carol("group", "list"));
    assert.deepEqual([listed.code, listed.stdout], [0, `Picnic (group ${group.id}): dave (admin), carol, erin\n`]);

    await dave!.sendGroupText(group.id, "Bring a blanket");
    const [message] = only(ok(await cli(carol("receive", "--json"))), "message");
    assert.deepEqual([message?.from, message?.fromUuid], ["dave", dave!.local.uuid]);

    // The device store keeps what it verified: history names the author even if contacts.json is gone.
    rmSync(join(dir, "carol", "contacts.json"));
    const [history] = ok(await cli(carol("chat", "group:Picnic", "--json", "--history", "1"), "/quit\n"));
    assert.deepEqual(
      [history?.type, history?.direction, history?.user, history?.text],
      ["history", "in", "dave", "Bring a blanket"],
    );
    await dave!.close();
    await erin!.close();
  });
});
