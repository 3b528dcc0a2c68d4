/**
 * The terminal chat and bridged groups: an admin bridges a group through a
 * bot (`group bridge`, `/bridge`), members see the disclosure banner when it
 * changes, when they open the group and in `group list`; `/unbridge` ends it.
 * The real `zimchat-chat` binary against a real homeserver; a plain account
 * stands in for the bridge bot. The tests run in order and tell one story.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli, failed, ok, only } from "./support/chat-cli.js";
import { startHomeserver, type Homeserver } from "@zimchat/testing/spawn";

const ircBanner =
  "Bridged: messages in this group are decrypted by ircbridge and sent in plaintext to IRC #chess. Attachments are not bridged.";
const xmppBanner =
  "Bridged: messages in this group are decrypted by ircbridge and sent in plaintext to XMPP chess@rooms.example. Attachments are also sent.";

describe("zimchat-chat: bridged groups", () => {
  let server: Homeserver;
  const dir = mkdtempSync(join(tmpdir(), "zimchat-chat-bridges-"));
  const as = (name: string, ...args: string[]): string[] => [...args, "--profile", join(dir, name)];
  const uuids: Record<string, string> = {};
  let groupId = "";

  before(async () => {
    server = await startHomeserver();
    for (const name of ["alice", "bob", "ircbridge"]) {
      const [registered] = ok(await cli(as(name, "register", "--server", server.url, "--username", name, "--json")));
      uuids[name] = String(registered?.uuid);
    }
    const [created] = only(ok(await cli(as("alice", "group", "create", "Chess", "bob", "--json"))), "groupChanged");
    groupId = String((created?.group as { id?: string } | undefined)?.id);
    ok(await cli(as("bob", "receive", "--json")));
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("has help for group bridge, group unbridge, /bridge and /unbridge", async () => {
    const group = (await cli(["group", "--help"])).stdout;
    for (const sub of ["bridge", "unbridge"]) assert.match(group, new RegExp(`^  ${sub} `, "m"));
    const bridge = await cli(["group", "bridge", "--help"]);
    assert.match(bridge.stdout, /^Usage: zimchat-chat group bridge \[options\] <group> <bot> <network> <target>/);
    assert.match(bridge.stdout, /--attachments/);
    assert.match(bridge.stdout, /--json/);
    const chat = (await cli(["chat", "--help"])).stdout.replace(/\s+/g, " ");
    assert.ok(chat.includes("/bridge <bot> <irc|xmpp> <target> [--attachments]"), chat);
    assert.ok(chat.includes("/unbridge <bot>"), chat);
  });

  it("only an admin bridges, to irc or xmpp", async () => {
    assert.deepEqual(failed(await cli(as("bob", "group", "bridge", "Chess", "ircbridge", "irc", "#chess", "--json"))), {
      type: "error",
      code: "group_refused",
      message: "only an admin of Chess can bridge it (admins: alice)",
    });
    assert.deepEqual(
      failed(await cli(as("alice", "group", "bridge", "Chess", "ircbridge", "matrix", "#chess", "--json"))),
      { type: "error", code: "invalid_argument", message: '"matrix" is not a network a bridge relays to: irc or xmpp' },
    );
    assert.equal(
      failed(await cli(as("alice", "group", "unbridge", "Chess", "bob", "--json"))).message,
      "bob is not a bridge of Chess",
    );
  });

  it("group bridge adds the bot and shows the banner; members see it arrive, in group list and when chat opens", async () => {
    const out = ok(await cli(as("alice", "group", "bridge", "Chess", "ircbridge", "irc", "#chess", "--json")));
    const bridge = { bot: "ircbridge", botUuid: uuids.ircbridge, network: "irc", target: "#chess", attachments: false };
    const group = { id: groupId, title: "Chess" };
    assert.deepEqual(only(out, "bridgesChanged", "groupChanged"), [
      {
        type: "bridgesChanged",
        group,
        bridges: [bridge],
        added: [bridge],
        removed: [],
        banners: [ircBanner],
        notices: [],
      },
      { type: "groupChanged", group, action: "bridged", users: ["ircbridge"], members: ["alice", "bob", "ircbridge"] },
    ]);

    const received = await cli(as("bob", "receive"));
    assert.equal(received.code, 0, received.stderr);
    assert.ok(received.stdout.includes(`(Chess) ${ircBanner}\n`), received.stdout);

    const listed = await cli(as("bob", "group", "list"));
    assert.equal(
      listed.stdout,
      `Chess (group ${groupId}): alice (admin), bob, ircbridge\n(Chess) ${ircBanner}\n`,
      "group list shows the banner under the group",
    );

    const chat = await cli(as("bob", "chat", "group:Chess"), "/quit\n");
    assert.equal(chat.code, 0, chat.stderr);
    assert.match(
      chat.stdout,
      new RegExp(`\\(Chess\\) ${ircBanner.replace(/[.#]/g, "\\$&")}\nChatting in the group Chess\\.`),
    );
    assert.ok(chat.stdout.includes("/bridge <bot> <irc|xmpp> <target> [--attachments]"), "the group chat says how");
  });

  it("/unbridge and /bridge in a group chat; members are told the bridge ended and see the new one", async () => {
    const out = ok(
      await cli(
        as("alice", "chat", "group:Chess", "--json"),
        "/unbridge ircbridge\n/bridge ircbridge xmpp\n/bridge ircbridge xmpp chess@rooms.example --attachments\n/quit\n",
      ),
    );
    assert.deepEqual(
      only(out, "bridge", "bridgesChanged", "groupChanged", "warning").map((l) => [
        l.type,
        l.action ?? l.banners ?? l.banner ?? l.message,
        l.notices,
      ]),
      [
        ["bridge", ircBanner, undefined],
        ["bridgesChanged", [], ["No longer bridged: ircbridge does not relay this group to IRC #chess any more."]],
        ["groupChanged", "unbridged", undefined],
        [
          "warning",
          "/bridge needs a bot, a network and a target: /bridge <bot> <irc|xmpp> <target> [--attachments]",
          undefined,
        ],
        ["bridgesChanged", [xmppBanner], []],
        ["groupChanged", "bridged", undefined],
      ],
    );

    const received = await cli(as("bob", "receive"));
    assert.equal(received.code, 0, received.stderr);
    assert.ok(
      received.stdout.includes(
        "(Chess) No longer bridged: ircbridge does not relay this group to IRC #chess any more.\n",
      ),
      received.stdout,
    );
    assert.ok(received.stdout.includes(`(Chess) ${xmppBanner}\n`), received.stdout);
    assert.ok(received.stdout.includes("alice removed ircbridge from Chess."), received.stdout);

    // In a chat with one person there is no group to bridge.
    const direct = await cli(as("bob", "chat", "alice"), "/bridge ircbridge irc #chess\n/quit\n");
    assert.match(direct.stderr, /warning: \/bridge works in a group chat/);
  });
});
