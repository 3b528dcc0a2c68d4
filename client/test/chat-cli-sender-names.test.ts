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
});
