/**
 * What the bridge core needs of a network: the contract between the core
 * (ZimChat side: groups, consent, the durable outbox) and one adapter (IRC or
 * XMPP: connections, puppets, pacing, reconnects). An adapter never sees a
 * ZimChat group id, a key or a store; the core never speaks a network's
 * protocol.
 */

/** The networks a bridge connects to; the same names as a group state's `bridges[].network`. */
export type NetworkName = "irc" | "xmpp";

/** How a network is named to people ("IRC", "XMPP"). */
export const networkLabel: Record<NetworkName, string> = { irc: "IRC", xmpp: "XMPP" };

/** A line said on the network by someone who is not the bridge, in a target the bridge joined. */
export interface RemoteMessage {
  /** The target as the adapter normalized it (`#club`, `club@conference.example`). */
  target: string;
  /** The speaker's name on the network (an IRC nick, a MUC occupant nick). */
  sender: string;
  text: string;
}

/** One ZimChat message to say on the network, in outbox order. */
export interface OutgoingMessage {
  /** The outbox row id: increasing, unique. */
  id: number;
  target: string;
  /** The ZimChat author's account id (puppets are keyed by it). */
  senderId: string;
  /** The author's name as ZimChat shows it (verified username, else a short account id). */
  senderName: string;
  /** The text, already cut to the network's policy by the core (see {@link NetworkAdapter.prepare}). */
  text: string;
}

/** What an adapter reports to the core. */
export interface AdapterEvents {
  /** A remote line arrived in a joined target. */
  message(message: RemoteMessage): void;
  /** The adapter is (again) connected and has joined its targets: the core drains the outbox. */
  connected(): void;
  /** The connection dropped; the adapter reconnects by itself, with backoff. */
  disconnected(reason: string): void;
  /** The puppet name this author was given before (kept in the bridge's store across restarts), if any. */
  puppetName(senderId: string): string | undefined;
  /** Records the puppet name an author now has (after a collision, a suffixed one). */
  puppetNamed(senderId: string, name: string): void;
}

/** What the core does with a message that does not fit a network's limits. */
export type Prepared = { ok: true; text: string; cut: boolean } | { ok: false; reason: string };

/** Counters an adapter keeps (all since start). */
export interface AdapterStatus {
  connected: boolean;
  reconnects: number;
  targets: string[];
  /** Puppet connections or occupants open now. */
  puppets: number;
}

/** One network connection of a bridge. */
export interface NetworkAdapter {
  readonly network: NetworkName;
  /**
   * A target as the network names it, normalized (IRC: `#chan`, lower case;
   * XMPP: `room@conference.domain`, lower case), or null when it is not
   * one (or not one this bridge's configuration allows).
   */
  normalizeTarget(target: string): string | null;
  /**
   * Applies the network's limits to a ZimChat text before it is queued:
   * the line and length caps, and the policy for what exceeds them (cut
   * with a notice, or refused with a reason the core tells the group).
   */
  prepare(text: string): Prepared;
  /** Connects (and keeps reconnecting with backoff until `stop()`). Resolves once the first attempt has started. */
  start(events: AdapterEvents): Promise<void>;
  stop(): Promise<void>;
  /**
   * Joins a target now and after every reconnect (idempotent). While
   * disconnected it only records the target: it never waits for the
   * connection.
   */
  join(target: string): Promise<void>;
  /** Leaves a target and forgets it (idempotent). */
  part(target: string): Promise<void>;
  /**
   * Says messages on the network, in order, paced so the bridge is never
   * kicked for flooding, and resolves only once the network server has
   * confirmed it processed them (IRC: a PONG for a PING sent after them).
   * Rejects when the connection drops first; the core then keeps them
   * queued and calls again after `connected`.
   */
  deliver(messages: OutgoingMessage[]): Promise<void>;
  status(): AdapterStatus;
}
