/** The events a {@link ZimClient} emits, and what they carry. */
import type { DeviceInfo, DisconnectReason, RemoteDeliveryFailure } from "@zimchat/protocol";
import type { StoredAttachmentPointer } from "./attachments.js";
import type { BridgeInfo } from "./bridges.js";
import type { GroupState } from "./content.js";
import type { DecryptionFailureReason } from "./errors.js";
import type { KeyTransparencyFailure } from "./key-transparency.js";
import type { SenderName } from "./names.js";

/** A decrypted message (text, attachment, or both), received or sent by this account's other device. */
export interface MessageEvent {
  envelopeId: string;
  /** The author's account id (this account's own id for a sent transcript). */
  from: string;
  fromDevice: number;
  /**
   * The server the author's account belongs to, when it is another
   * homeserver than this device's (federation): show the author as
   * `name@fromServer`. Absent for this homeserver's users.
   */
  fromServer?: string;
  /** The conversation: the other person's account id, or `group:<id>`. */
  conversation: string;
  /** The group id, for group messages. */
  group?: string;
  text: string;
  /** With `server` when the blob is stored on the sender's server, another than this device's. */
  attachment?: StoredAttachmentPointer;
  /** The sender's timestamp. */
  timestamp: number;
  /** The envelope came sealed: the server did not know who sent it. */
  sealed: boolean;
  /** Sent by this account's other device (a sync transcript), not received. */
  outgoing: boolean;
  /**
   * The name the sender claimed inside the encrypted message, checked by
   * this device: `verified` when the server's directory maps `username` to
   * `from` (looked up once, then cached). Show `username` instead of `from`
   * only when verified; an unverified claim may be someone pretending. Absent
   * when the sender sent no name (older clients).
   */
  senderName?: SenderName;
}

/** A group was created, changed, or this account was removed from it. */
export interface GroupUpdatedEvent {
  group: GroupState;
  /** Who changed it. */
  by: string;
  added: string[];
  removed: string[];
  /** This account is no longer a member. */
  left: boolean;
  /**
   * Names by account id, for the members (and removed members) whose
   * username this device has verified, and for `by` (verified or not: check
   * `verified`). Members without an entry are known by account id only.
   */
  names?: Record<string, SenderName>;
}

/**
 * A group's bridges changed (compared by account, network, target and
 * attachments): an applied group change, received or made by this device,
 * added, removed or changed a bridge. Show `bridgeBanner` for each of
 * `bridges` (`removed` ones with `bridgeRemovedNotice`).
 */
export interface BridgesChangedEvent {
  groupId: string;
  /** The group's bridges now. */
  bridges: BridgeInfo[];
  /** Bridges it has now and had not (a changed bridge is in both lists: its old form removed, its new one added). */
  added: BridgeInfo[];
  removed: BridgeInfo[];
}

/**
 * A message to a user of another server that this homeserver had queued
 * (their server was unreachable) will not be delivered, and this device could
 * not repair it by itself. Device changes (`mismatched_devices`,
 * `stale_devices`) are repaired and the message re-sent automatically; they
 * reach the app only when that re-send failed (`error`).
 */
export interface RemoteDeliveryFailedEvent {
  /** The send's id, as its homeserver named it (`queued` sends). */
  id: string;
  /** The recipient's account id. */
  to: string;
  /** The recipient's server. */
  server: string;
  reason: RemoteDeliveryFailure;
  /** The message's timestamp (as `sendText` returned it), when this device still knew the send. */
  timestamp?: number;
  /** Its text, when this device still knew the send. */
  text?: string;
  /** Why an automatic re-send (after a device change) failed. */
  error?: unknown;
}

/** An account id claimed for another server than the one this device bound it to: refused. */
export interface ServerBindingRefusedEvent {
  uuid: string;
  /** The server the account is bound to (null: this device's homeserver). */
  boundTo: string | null;
  /** The server now claiming it (null: this device's homeserver). */
  claimed: string | null;
  /** The refused envelope, when the claim came with one (it is also a `decryptionFailed` with `server_mismatch`). */
  envelopeId?: string;
}

/** This account's device list changed ("a new device was linked to your account"). */
export interface DeviceListChangedEvent {
  devices: DeviceInfo[];
  added: number[];
  removed: number[];
}

/** The events a {@link ZimClient} emits. */
export interface ZimClientEvents {
  message: [MessageEvent];
  /**
   * A peer's identity key changed (once per change, however many of their
   * devices showed it); `blocked` when sending to them now needs
   * re-verification: the new key is recorded, `safetyNumber` shows the new
   * number, and `verify` with it lifts the block.
   */
  identityChanged: [{ uuid: string; blocked: boolean }];
  /**
   * A contact's device offered a signed pre-key or Kyber pre-key that the
   * account's identity key did not sign (the server may be tampering with
   * it). Sends to that contact fail with `BadDeviceKeysError` meanwhile.
   */
  badDeviceKeys: [{ uuid: string; deviceId: number; key: "signed_pre_key" | "kyber_pre_key" }];
  /**
   * The server's sealed-sender trust root is no longer the pinned one
   * (fingerprints as admins publish them). Sealed sends are held
   * (`SealedSendingPausedError`) until the app calls `acceptTrustRoot` or
   * `allowUnsealedSending`; `unsealedAllowed` says which policy is in force.
   * `server` set: another server's trust root changed (federation: the one
   * its users' sender certificates are checked against); sealed sends to its
   * users are held, and its users' sealed messages that the new root signs
   * are refused, until the app calls `acceptTrustRoot(fingerprint, server)`
   * or `allowUnsealedSending(server)`.
   */
  trustRootChanged: [{ pinned: string; presented: string; unsealedAllowed: boolean; server?: string }];
  /** The peer's device decrypted the messages with these timestamps. */
  deliveryReceipt: [{ from: string; fromDevice: number; timestamps: number[] }];
  /** An envelope could not be decrypted (or was refused); it is acknowledged and dropped. */
  decryptionFailed: [{ envelopeId: string; from?: string; reason: DecryptionFailureReason; error: unknown }];
  groupUpdated: [GroupUpdatedEvent];
  /**
   * A group's bridges changed (after its `groupUpdated`, or after this
   * device's own `bridgeGroup`, `unbridgeGroup` or `removeGroupMembers`):
   * bots that decrypt the group and relay it in plaintext outside ZimChat.
   * Show the disclosure (`bridgeBanner`) for every bridge.
   */
  bridgesChanged: [BridgesChangedEvent];
  deviceListChanged: [DeviceListChangedEvent];
  /**
   * An identity key the server handed out could not be checked against the
   * server's key-transparency log: it is not in the log (`not_included`),
   * the log's history was rewritten (`inconsistent`), a tree head is not
   * signed by the pinned log key (`bad_signature`), the log key changed
   * (`log_key_changed`), or a log this device has seen stopped answering
   * (`unavailable`). The server may be handing out a key that is not the
   * contact's. Messages are still sent (the key is treated like an
   * unverified key change); show a warning and ask the user to compare
   * safety numbers with `accountId` before trusting the conversation.
   */
  keyTransparencyFailure: [KeyTransparencyFailure];
  /**
   * The server says this device's one-time pre-keys are being claimed faster
   * than its per-device budget allows (someone may be draining them): the
   * client refills them at once. Informational; apps may log or show it.
   */
  preKeysDraining: [{ ecCount: number; pqCount: number }];
  /**
   * A queued send to a user of another server failed for good (see
   * {@link RemoteDeliveryFailedEvent}); show it beside the message.
   */
  remoteDeliveryFailed: [RemoteDeliveryFailedEvent];
  /**
   * A server claimed an account that this device had bound to another
   * server (a look-up answer or an envelope): refused, never decrypted or
   * shown as that contact. A server may be impersonating a user; warn.
   */
  serverBindingRefused: [ServerBindingRefusedEvent];
  /** The stored queue has been delivered after connecting. */
  queueEmpty: [];
  /**
   * The authenticated socket connected (`connected: true`, the stored queue
   * follows, then `queueEmpty`) or lost its connection (it reconnects by
   * itself, unless {@link ZimClientEvents.closedByServer} said otherwise).
   */
  connectionChanged: [{ connected: boolean }];
  /**
   * The server is closing this device's connection, and it does not come
   * back by itself: `displaced` (another connection of the same device, the
   * same store run twice, took over), `removed` (the device was unlinked),
   * `disabled` or `deleted` (the account), or `shutdown`.
   */
  closedByServer: [{ reason: DisconnectReason }];
  /**
   * Something failed in the background (key maintenance, a receipt, an ack
   * after the connection closed). Not Node's "error" event: nothing throws
   * when no listener is attached.
   */
  warning: [unknown];
}

/** What the client's modules may do with events: emit them (the facade is the emitter the app listens on). */
export interface ClientEvents {
  emit<K extends keyof ZimClientEvents>(event: K, ...args: ZimClientEvents[K]): unknown;
}
