/**
 * Bridges: a bot account, a member of a group, that decrypts the group's
 * messages and relays them in plaintext to IRC or XMPP. The group state
 * records each one (`bridges`, set by admins only), so that every member's
 * client can show a permanent disclosure: {@link bridgeBanner} is that text,
 * the same in the terminal chat, in bots and in the web client.
 */
import type { GroupBridge, GroupState } from "./content.js";
import type { BridgesChangedEvent } from "./events.js";
import type { SenderName } from "./names.js";

/** A bridge as the client shows it: `attachments` spelled out, and the bot's verified name if this device knows it. */
export type BridgeInfo = GroupBridge & {
  attachments: boolean;
  /** The bot's verified name (as `groupMembers` gives names), or null: then show its account id. */
  name: SenderName | null;
};

/** What the banner needs: a {@link BridgeInfo}, or a bare {@link GroupBridge} (then named by account id). */
export type BridgeLike = GroupBridge & { name?: SenderName | null };

/** How each network is named in the banner. */
export const bridgeNetworkLabels: Readonly<Record<GroupBridge["network"], string>> = { irc: "IRC", xmpp: "XMPP" };

// Control characters, line and paragraph separators and bidirectional overrides: an admin-chosen target (or a name)
// could otherwise break the banner's one line, or make it read as something else.
const unsafe = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const printable = (text: string): string => text.replace(unsafe, "\ufffd");

/** The bot as the banner names it: its verified username, else its account id. */
function botName(bridge: BridgeLike): string {
  return printable(bridge.name?.verified ? bridge.name.username : bridge.account);
}

const where = (bridge: BridgeLike): string => `${bridgeNetworkLabels[bridge.network]} ${printable(bridge.target)}`;

/**
 * The one-line disclosure every member's client shows for a bridged group,
 * whenever the group is shown and whenever its bridges change:
 *
 * `Bridged: messages in this group are decrypted by <bot> and sent in plaintext to <IRC|XMPP> <target>.`
 * followed by ` Attachments are not bridged.`, or ` Attachments are also sent.`
 * when the bridge relays attachments.
 * `<bot>` is the bot's verified username, else its account id. Control
 * characters, line separators and bidirectional overrides in the target or
 * name become U+FFFD, so the text stays one honest line.
 *
 * @example
 * for (const bridge of client.groupBridges(groupId)) console.log(bridgeBanner(bridge));
 * // Bridged: messages in this group are decrypted by ircbridge and sent in plaintext to IRC #club.
 * // Attachments are not bridged.   (on the same line)
 */
export function bridgeBanner(bridge: BridgeLike): string {
  const attachments = bridge.attachments ? "Attachments are also sent." : "Attachments are not bridged.";
  return `Bridged: messages in this group are decrypted by ${botName(bridge)} and sent in plaintext to ${where(bridge)}. ${attachments}`;
}

/**
 * The one line shown when a bridge is removed:
 * `No longer bridged: <bot> does not relay this group to <IRC|XMPP> <target> any more.`
 */
export function bridgeRemovedNotice(bridge: BridgeLike): string {
  return `No longer bridged: ${botName(bridge)} does not relay this group to ${where(bridge)} any more.`;
}

/** A group's bridges (none when it has no `bridges`). */
export const bridgesOf = (group: GroupState | null | undefined): GroupBridge[] => group?.bridges ?? [];

/**
 * Whether a group state's bridges are acceptable: each names a member, and
 * no account twice.
 */
export function validBridges(group: GroupState): boolean {
  const accounts = new Set<string>();
  for (const { account } of bridgesOf(group)) {
    if (!group.members.includes(account) || accounts.has(account)) return false;
    accounts.add(account);
  }
  return true;
}

const bridgeKey = (b: GroupBridge): string => JSON.stringify([b.account, b.network, b.target, b.attachments ?? false]);

/**
 * The bridges `after` has and `before` had not (`added`) and the other way
 * (`removed`), compared by account, network, target and attachments: a
 * changed bridge is one removed and one added.
 */
export function diffBridges(
  before: readonly GroupBridge[],
  after: readonly GroupBridge[],
): { added: GroupBridge[]; removed: GroupBridge[] } {
  const had = new Set(before.map(bridgeKey));
  const has = new Set(after.map(bridgeKey));
  return { added: after.filter((b) => !had.has(bridgeKey(b))), removed: before.filter((b) => !has.has(bridgeKey(b))) };
}

/** A bridge with its attachments flag spelled out and the bot's name. */
export function bridgeInfo(bridge: GroupBridge, nameOf: (uuid: string) => SenderName | null): BridgeInfo {
  return { ...bridge, attachments: bridge.attachments ?? false, name: nameOf(bridge.account) };
}

/** The `bridgesChanged` event for a group going from `before` to `after`, or null when its bridges did not change. */
export function bridgesChange(
  before: GroupState | null,
  after: GroupState,
  nameOf: (uuid: string) => SenderName | null,
): BridgesChangedEvent | null {
  const { added, removed } = diffBridges(bridgesOf(before), bridgesOf(after));
  if (!added.length && !removed.length) return null;
  const info = (b: GroupBridge): BridgeInfo => bridgeInfo(b, nameOf);
  return {
    groupId: after.id,
    bridges: bridgesOf(after).map(info),
    added: added.map(info),
    removed: removed.map(info),
  };
}
