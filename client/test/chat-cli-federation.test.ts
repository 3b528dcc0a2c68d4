import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FederationUnavailableError, ServerBindingError } from "../src/index.js";
import { toCliError } from "../src/cli/cli-error.js";
import { renderEvent } from "../src/cli/render.js";

describe("zimchat-chat: what it says about other homeservers", () => {
  it("a message held by the homeserver, one given up, and a refused binding", () => {
    assert.equal(
      renderEvent({
        type: "sent",
        to: "bob@news.example",
        toUuid: "d2716171-0000-4000-8000-000000000000",
        text: "hi",
        timestamp: Date.UTC(2026, 11, 4, 9, 30),
        devices: 0,
        heldByHomeserver: true,
      })?.replace(/^\[\d\d:\d\d\] /, ""),
      "you → bob@news.example: hi (their homeserver is not answering: yours holds it and delivers it later)",
    );
    assert.equal(
      renderEvent({
        type: "remoteDeliveryFailed",
        to: "bob@news.example",
        toUuid: "d2716171-0000-4000-8000-000000000000",
        server: "news.example",
        reason: "expired",
        text: "hi\u001b[2J",
      }),
      "Not delivered to bob@news.example: hi\ufffd[2J\n  news.example did not answer for too long; send it again later",
    );
    assert.equal(
      renderEvent({
        type: "serverBindingRefused",
        user: "bob@news.example",
        uuid: "d2716171-0000-4000-8000-000000000000",
        boundTo: "news.example",
        claimed: null,
      }),
      "Refused: your homeserver claims the account of bob@news.example (d2716171-0000-4000-8000-000000000000), " +
        "which belongs to news.example. A server may be impersonating a user; nothing from it was shown.",
    );
  });

  it("errors: federation off, and a refused look-up", () => {
    const off = toCliError(new FederationUnavailableError("bob@news.example", "the homeserver does not federate"));
    assert.equal(off.code, "federation_unavailable");
    assert.equal(off.message, "the homeserver does not federate");
    const refused = toCliError(new ServerBindingError("d2716171-0000-4000-8000-000000000000", null, "news.example"), {
      nameOf: () => "bob",
    });
    assert.equal(refused.code, "server_binding_refused");
    assert.match(
      refused.message,
      /^refused: news\.example claims the account of bob, which belongs to your homeserver/,
    );
  });
});
