/**
 * Everything the terminal chat reports, as a tagged union: `--json` prints
 * each as one JSON object per line, otherwise {@link renderEvent} turns it
 * into text for people.
 */

/** An attachment as the CLI shows it: never its key or digest, which stay in the device store. */
export interface AttachmentSummary {
  /** The name the sender gave it (untrusted: `download` never uses it as a path as is). */
  fileName?: string;
  size: number;
  contentType?: string;
}

/** The group a message belongs to. */
export interface GroupRef {
  id: string;
  title: string;
}

/** A group's bridge: a bot that decrypts the group and relays it in plaintext to IRC or XMPP. */
export interface BridgeSummary {
  /** The bot's username (else its account id). */
  bot: string;
  botUuid: string;
  network: "irc" | "xmpp";
  target: string;
  attachments: boolean;
}

/** What the CLI reports. `user` fields are usernames where known, else account ids. */
export type CliEvent =
  /** `zimchat-chat web` is serving: open `url` (it holds the launch token) in a browser on this machine. */
  | { type: "webReady"; url: string; port: number; profile: string; registered: boolean }
  /** `zimchat-chat web` stopped. */
  | { type: "webStopped" }
  /** `address`: how users of other homeservers write this account (`name@server`), when the homeserver federates. */
  | {
      type: "registered";
      username: string;
      uuid: string;
      deviceId: number;
      server: string;
      profile: string;
      address?: string;
    }
  /** `address` as for `registered`, once this device has learned the homeserver's federation name. */
  | {
      type: "whoami";
      username: string;
      uuid: string;
      deviceId: number;
      server: string;
      profile: string;
      address?: string;
    }
  /** A message that arrived (from the stored queue or live). */
  | {
      type: "message";
      from: string;
      fromUuid: string;
      /** The other homeserver the sender belongs to (federation); absent for this homeserver's users. */
      fromServer?: string;
      fromDevice: number;
      text: string;
      timestamp: number;
      /** Also the id `download` takes for its attachment. */
      envelopeId: string;
      group?: GroupRef;
      attachment?: AttachmentSummary;
    }
  /**
   * A message this account sent from another of its devices (a sent transcript). `to` is a username or the group's
   * title.
   */
  | {
      type: "outgoing";
      to: string;
      toUuid?: string;
      group?: GroupRef;
      fromDevice: number;
      text: string;
      timestamp: number;
      envelopeId: string;
      attachment?: AttachmentSummary;
    }
  /**
   * A message from the stored conversation (`chat` shows the history first). `user` is the other person, or in a group
   * the author.
   */
  | {
      type: "history";
      direction: "in" | "out";
      user: string;
      text: string;
      timestamp: number;
      group?: GroupRef;
      id?: string;
      attachment?: AttachmentSummary;
    }
  /**
   * A message sent to a user; `queued` when `chat` had queued it while the homeserver was unreachable;
   * `heldByHomeserver` when the recipient's homeserver (another server) did not answer: your homeserver keeps it and
   * delivers it later (a `remoteDeliveryFailed` follows if it gives up).
   */
  | {
      type: "sent";
      to: string;
      toUuid: string;
      text: string;
      timestamp: number;
      devices: number;
      queued?: true;
      heldByHomeserver?: true;
    }
  /**
   * A message to a user of another homeserver that your homeserver had held will not be delivered (`reason`, the
   * server's: not_found, unauthorized, refused, expired; or a device change whose automatic re-send failed: `error`).
   */
  | {
      type: "remoteDeliveryFailed";
      to: string;
      toUuid: string;
      server: string;
      reason: string;
      text?: string;
      timestamp?: number;
      error?: string;
    }
  /**
   * A server claimed an account that this device knows as another server's (or this homeserver's): refused, nothing
   * from it was decrypted. A server may be impersonating `user`. `boundTo`/`claimed`: null is your homeserver.
   */
  | { type: "serverBindingRefused"; user: string; uuid: string; boundTo: string | null; claimed: string | null }
  /**
   * A message sent to a group: one upload the server fans out to `devices` member devices (members of other
   * homeservers included). `notDelivered`: members of other homeservers whose server refused it (`code`), or whose
   * server did not answer and their homeserver holds it (`held`).
   */
  | {
      type: "groupSent";
      group: GroupRef;
      text: string;
      timestamp: number;
      devices: number;
      queued?: true;
      notDelivered?: { user: string; server: string; code: string }[];
    }
  /**
   * `chat`: a typed line that could not be sent (the homeserver is unreachable): it is kept, in memory and in
   * the profile's outbox.json, and sent when the homeserver answers again (or by the next `chat` with the same
   * user or group). `pending` counts the lines waiting; `reason` says why.
   */
  | { type: "queued"; to: string; group?: GroupRef; text: string; pending: number; reason: string }
  /** `chat` ends with lines still queued: they stay in the profile's outbox.json for the next `chat` with `to`. */
  | { type: "unsent"; to: string; group?: GroupRef; count: number; profile: string }
  | {
      type: "fileSent";
      to: string;
      toUuid?: string;
      group?: GroupRef;
      fileName: string;
      size: number;
      caption: string;
      timestamp: number;
    }
  | { type: "downloaded"; messageId: string; path: string; size: number; fileName?: string }
  | { type: "receipt"; from: string; fromUuid: string; timestamps: number[] }
  | { type: "identityChanged"; user: string; uuid: string; blocked: boolean }
  | { type: "decryptionFailed"; from: string | null; fromUuid: string | null; reason: string }
  /**
   * The stored queue has been delivered; `received` counts the messages (sent, received, with files) and group changes
   * in it.
   */
  | { type: "queueEmpty"; received: number }
  | {
      type: "safetyNumber";
      user: string;
      digits: string;
      grouped: string;
      scannable: string;
      verified: boolean;
      qr?: string;
    }
  | { type: "verified"; user: string }
  | { type: "accepted"; user: string; wasBlocked: boolean }
  /** `chat` is connected and reads lines; `user` is the other person or the group's title. */
  | { type: "chatReady"; user: string; group?: GroupRef }
  /** `link`: the new device's link URI, to approve on the primary device (`qr` in text mode only). */
  | { type: "linkCode"; uri: string; expiresAt: number; qr?: string }
  | { type: "linked"; username: string; uuid: string; deviceId: number; server: string; profile: string }
  | { type: "linkApproved"; username: string }
  /** One of this account's devices (`devices`); days are YYYY-MM-DD (UTC). */
  | { type: "device"; id: number; created: string; lastSeen: string | null; current: boolean }
  | { type: "unlinked"; deviceId: number; current: boolean }
  /** This account's device list changed: a device was linked (`added`) or unlinked (`removed`). */
  | { type: "devicesChanged"; added: number[]; removed: number[] }
  /** A group this device knows (`group list`); `member` is false once this account was removed. */
  | { type: "group"; id: string; title: string; members: string[]; admins: string[]; member: boolean }
  /** The end of `group list`. */
  | { type: "groupsListed"; count: number }
  /**
   * A bridged group's disclosure, shown whenever the group is (`chat` opening it, `group list`): `banner` is the
   * SDK's `bridgeBanner` text, the same in every client.
   */
  | { type: "bridge"; group: GroupRef; bridge: BridgeSummary; banner: string }
  /**
   * A group's bridges changed (by this device or an admin's): `banners` discloses every bridge it has now, `notices`
   * says which ones ended (a changed bridge is in `removed` and `added`).
   */
  | {
      type: "bridgesChanged";
      group: GroupRef;
      bridges: BridgeSummary[];
      added: BridgeSummary[];
      removed: BridgeSummary[];
      banners: string[];
      notices: string[];
    }
  /** This device created or changed a group (`bridged`, `unbridged`: `users` is the bridge's bot). */
  | {
      type: "groupChanged";
      group: GroupRef;
      action: "created" | "added" | "removed" | "left" | "bridged" | "unbridged";
      users: string[];
      members: string[];
    }
  /**
   * A group this account is in was created or changed by `by` (`byThisAccount`:
   * on another of this account's devices); `joined` when this account was
   * added, `left` when it was removed.
   */
  | {
      type: "groupUpdated";
      group: GroupRef;
      by: string;
      byUuid: string;
      byThisAccount: boolean;
      added: string[];
      removed: string[];
      joined: boolean;
      left: boolean;
      members: string[];
    }
  | { type: "warning"; message: string }
  | { type: "error"; code: string; message: string };
