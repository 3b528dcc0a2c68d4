import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ApiError, MailboxFullError } from "../src/index.js";
import { type Homeserver, registerDevice, startHomeserver } from "@zimchat/testing/spawn";

describe("a full recipient mailbox", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver(["--mailbox-max-envelopes", "3"]);
  });
  after(async () => server.stop());

  it("raises MailboxFullError from sendText, over REST and over the socket, with a retry hint", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    for (let i = 0; i < 3; i++) await alice.sendText(bob.local.username, `m${i}`);
    const overRest = await alice.sendText(bob.local.username, "one too many").then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(overRest instanceof MailboxFullError, `got ${String(overRest)}`);
    assert.ok(overRest instanceof ApiError);
    assert.equal(overRest.code, "mailbox_full");
    assert.equal(overRest.status, 507);
    assert.ok((overRest.retryAfterMs() ?? 0) > 0);

    await alice.connect();
    const overSocket = await alice.sendText(bob.local.username, "still too many").then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(overSocket instanceof MailboxFullError, `got ${String(overSocket)}`);
    alice.disconnect();
  });
});
