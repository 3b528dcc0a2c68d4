/**
 * Leaving a group: the one change a member who is not an admin may send is
 * the group without itself, nothing else changed (`applyGroupUpdate`).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { GroupState } from "../src/index.js";
import { applyGroupUpdate } from "../src/groups.js";

const ids = {
  group: "7d9c1f4e-0b1a-4c55-9a53-3f1f5b0e8a01",
  admin: "11111111-1111-4111-8111-111111111111",
  member: "22222222-2222-4222-8222-222222222222",
  bot: "33333333-3333-4333-8333-333333333333",
  other: "44444444-4444-4444-8444-444444444444",
};

const base: GroupState = {
  id: ids.group,
  title: "club",
  members: [ids.admin, ids.member, ids.bot, ids.other],
  admins: [ids.admin],
  revision: 4,
  bridges: [{ account: ids.bot, network: "irc", target: "#club" }],
};

describe("leaving a group", () => {
  it("accepts a member's own leave, from that member, and shows it as its removal", () => {
    const left: GroupState = { ...base, members: [ids.admin, ids.bot, ids.other], revision: 5 };
    const change = applyGroupUpdate(base, left, ids.member, ids.admin);
    assert.deepEqual(change?.removed, [ids.member]);
    assert.deepEqual(change?.added, []);
    // The same state sent by another member is a change by a non-admin: refused.
    assert.equal(applyGroupUpdate(base, left, ids.other, ids.admin), null);
    // Stale revisions are refused as for any change.
    assert.equal(applyGroupUpdate(base, { ...left, revision: 4 }, ids.member, ids.admin), null);
  });

  it("refuses a 'leave' that changes anything else: other members, the title, admins or bridges", () => {
    const tries: [string, GroupState][] = [
      ["takes another member out too", { ...base, members: [ids.admin, ids.bot], revision: 5 }],
      [
        "adds someone",
        { ...base, members: [ids.admin, ids.bot, ids.other, "55555555-5555-4555-8555-555555555555"], revision: 5 },
      ],
      ["renames", { ...base, title: "mine now", members: [ids.admin, ids.bot, ids.other], revision: 5 }],
      [
        "makes another admin",
        { ...base, members: [ids.admin, ids.bot, ids.other], admins: [ids.admin, ids.other], revision: 5 },
      ],
      ["drops the bridge", { ...base, members: [ids.admin, ids.bot, ids.other], bridges: [], revision: 5 }],
      ["stays in", { ...base, revision: 5 }],
    ];
    for (const [what, update] of tries) assert.equal(applyGroupUpdate(base, update, ids.member, ids.admin), null, what);
  });

  it("lets a bridge bot leave, its bridge going with it", () => {
    const left: GroupState = { ...base, members: [ids.admin, ids.member, ids.other], revision: 5 };
    delete left.bridges;
    assert.deepEqual(applyGroupUpdate(base, left, ids.bot, ids.admin)?.removed, [ids.bot]);
  });
});
