import { missingCase } from "@zimchat/protocol";
import type { AttachmentSummary, CliEvent, GroupRef } from "./cli-events.js";

const pad = (n: number): string => String(n).padStart(2, "0");

/** A message time as people read it in a chat: `HH:MM`, local time. */
export function clockTime(timestamp: number): string {
  const d = new Date(timestamp);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The commands `chat` understands besides text. */
export const chatHelp =
  "/file <path> sends a file, /safety shows the safety number, /quit leaves, //text sends /text (a bot command)";

/** The commands `chat` understands in a group besides {@link chatHelp} (admins only). */
export const groupChatHelp =
  "in a group, admins: /bridge <bot> <irc|xmpp> <target> [--attachments] relays it through a bridge bot, /unbridge <bot> ends that";

/** A byte count as people read it: `512 B`, `1.5 KiB`, `20.0 MiB`. */
export function byteSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** The day part of a device's dates, with "today" or "yesterday" where it applies. */
export function dayLabel(day: string, now = Date.now()): string {
  const today = new Date(now).toISOString().slice(0, 10);
  const yesterday = new Date(now - 86_400_000).toISOString().slice(0, 10);
  return day === today ? `${day} (today)` : day === yesterday ? `${day} (yesterday)` : day;
}

// Control characters in names and texts from others could move the cursor or rewrite the screen.
const printable = (text: string): string => text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, "\ufffd");

/** How an attachment appears in a message line, and how to get it. */
function attachmentText(attachment: AttachmentSummary, id: string | undefined): string {
  const name = attachment.fileName ? `${printable(attachment.fileName)}, ` : "";
  return `[file: ${name}${byteSize(attachment.size)}${id ? `; zimchat-chat download ${id}` : ""}]`;
}

/** A message's text with its attachment, if any. */
function body(text: string, attachment: AttachmentSummary | undefined, id: string | undefined): string {
  if (!attachment) return printable(text);
  return text ? `${printable(text)} ${attachmentText(attachment, id)}` : attachmentText(attachment, id);
}

const inGroup = (group: GroupRef | undefined): string => (group ? `(${printable(group.title)}) ` : "");

const list = (names: string[]): string => names.join(", ");

const messages = (n: number): string => (n === 1 ? "1 message" : `${n} messages`);

/** The line naming how users of other homeservers reach this account, if it federates. */
const federatedAs = (address: string | undefined): string =>
  address ? `\nUsers of other homeservers reach you as ${address}.` : "";

/** Why a message held for another homeserver was given up, in words. */
function remoteFailureText(reason: string, server: string): string {
  switch (reason) {
    case "not_found":
      return `${server} has no such account (any more)`;
    case "unauthorized":
      return `${server} refused it (not authorized)`;
    case "refused":
      return `${server} refused it (its mailbox may be full, or a rule there refused it)`;
    case "expired":
      return `${server} did not answer for too long; send it again later`;
    default:
      return `${server} refused it (${reason})`;
  }
}

/** Which stream an event goes to in human mode. */
export function isDiagnostic(event: CliEvent): boolean {
  return (
    event.type === "error" ||
    event.type === "warning" ||
    event.type === "decryptionFailed" ||
    event.type === "queued" ||
    event.type === "remoteDeliveryFailed" ||
    event.type === "serverBindingRefused" ||
    event.type === "unsent"
  );
}

/**
 * The text people see for an event, or null when it shows nothing (an empty
 * queue is only worth a line when nothing arrived).
 */
export function renderEvent(event: CliEvent): string | null {
  switch (event.type) {
    case "registered":
      return `Registered ${event.username} on ${event.server} (account ${event.uuid}, device ${event.deviceId}).\nProfile: ${event.profile}${federatedAs(event.address)}`;
    case "whoami":
      return `${event.username} on ${event.server} (account ${event.uuid}, device ${event.deviceId}).\nProfile: ${event.profile}${federatedAs(event.address)}`;
    case "message":
      return `[${clockTime(event.timestamp)}] ${inGroup(event.group)}${event.from}: ${body(event.text, event.attachment, event.envelopeId)}`;
    case "outgoing":
      return `[${clockTime(event.timestamp)}] you → ${event.group ? `(${printable(event.group.title)})` : event.to} (from your device ${event.fromDevice}): ${body(event.text, event.attachment, event.envelopeId)}`;
    case "history":
      // The same shapes as live lines: "you → bob: …" or "you → (Group): …" for what this account sent, "bob: …" or
      // "(Group) bob: …" for the rest.
      return event.direction === "out"
        ? `[${clockTime(event.timestamp)}] you → ${event.group ? `(${printable(event.group.title)})` : event.user}: ${body(event.text, event.attachment, undefined)}`
        : `[${clockTime(event.timestamp)}] ${inGroup(event.group)}${event.user}: ${body(event.text, event.attachment, event.id)}`;
    case "sent":
      return (
        `[${clockTime(event.timestamp)}] you → ${event.to}: ${event.text}${event.queued ? " (sent now: it was queued)" : ""}` +
        (event.heldByHomeserver ? " (their homeserver is not answering: yours holds it and delivers it later)" : "")
      );
    case "remoteDeliveryFailed": {
      const what = event.text !== undefined ? `: ${printable(event.text)}` : "";
      const why = event.error ?? remoteFailureText(event.reason, event.server);
      return `Not delivered to ${event.to}${what}\n  ${why}`;
    }
    case "serverBindingRefused":
      return (
        `Refused: ${event.claimed ?? "your homeserver"} claims the account of ${event.user} (${event.uuid}), ` +
        `which belongs to ${event.boundTo ?? "your homeserver"}. A server may be impersonating a user; nothing from it was shown.`
      );
    case "groupSent":
      return (
        `[${clockTime(event.timestamp)}] you → (${printable(event.group.title)}): ${event.text}${event.queued ? " (sent now: it was queued)" : ""}` +
        (event.notDelivered?.length
          ? `\n  not delivered to ${event.notDelivered.map((n) => `${n.user} (${n.code})`).join(", ")}`
          : "")
      );
    case "queued":
      return (
        `Not sent yet: ${event.reason}\n` +
        `  queued, will send when the server is reachable (${messages(event.pending)} waiting for ${event.group ? `(${printable(event.group.title)})` : event.to}): ${printable(event.text)}`
      );
    case "unsent":
      return (
        `${messages(event.count)} to ${event.group ? `(${printable(event.group.title)})` : event.to} not sent: the homeserver was unreachable. ` +
        `They are kept in ${event.profile} and sent the next time you run zimchat-chat chat ${event.group ? `"group:${event.group.id}"` : event.to}.`
      );
    case "fileSent":
      return `[${clockTime(event.timestamp)}] you → ${event.group ? `(${printable(event.group.title)})` : event.to}: ${body(event.caption, { fileName: event.fileName, size: event.size }, undefined)}`;
    case "downloaded":
      return `Saved ${event.fileName ? `${printable(event.fileName)} ` : ""}(${byteSize(event.size)}) to ${event.path}`;
    case "receipt":
      return `✓ delivered to ${event.from} (${messages(event.timestamps.length)})`;
    case "identityChanged":
      return event.blocked
        ? `${event.user}'s safety number has changed. Sending to ${event.user} is blocked until you verify again ` +
            `(zimchat-chat safety-number ${event.user}, then zimchat-chat verify ${event.user} <number>) or run zimchat-chat accept ${event.user}.`
        : `${event.user}'s safety number has changed. Compare it again: zimchat-chat safety-number ${event.user}`;
    case "decryptionFailed":
      return `Could not decrypt a message from ${event.from ?? "an unknown sender"} (${event.reason}); it was dropped.`;
    case "queueEmpty":
      return event.received ? null : "No new messages.";
    case "safetyNumber":
      return [
        `Safety number with ${event.user} (${event.verified ? "verified" : "not verified"}):`,
        `  ${event.grouped}`,
        ...(event.qr ? [event.qr.trimEnd()] : []),
        `Compare the digits with ${event.user}'s screen, or let ${event.user} scan the code; then run zimchat-chat verify ${event.user} <their number or payload>.`,
        `Payload for ${event.user} to scan: ${event.scannable}`,
      ].join("\n");
    case "verified":
      return `${event.user} is verified: the safety numbers match.`;
    case "accepted":
      return `Accepted ${event.user}'s ${event.wasBlocked ? "new " : ""}safety number: sending is allowed. ${event.user} is not verified until you compare safety numbers.`;
    case "chatReady":
      return event.group
        ? `Chatting in the group ${printable(event.group.title)}. Type a message and press Enter; ${chatHelp}; ${groupChatHelp}.`
        : `Chatting with ${event.user}. Type a message and press Enter; ${chatHelp}.`;
    case "linkCode":
      return [
        "To link this device, approve it on your primary device (device 1): scan this code, or run there",
        `  zimchat-chat approve-link '${event.uri}'`,
        ...(event.qr ? [event.qr.trimEnd()] : []),
        `Waiting for the approval (the code expires at ${clockTime(event.expiresAt)}; Ctrl-C cancels)…`,
      ].join("\n");
    case "linked":
      return `Linked: this is ${event.username}'s device ${event.deviceId} on ${event.server} (account ${event.uuid}).\nProfile: ${event.profile}`;
    case "linkApproved":
      return `Approved: the new device joins ${event.username}'s account as soon as it has registered its keys (zimchat-chat devices lists it).`;
    case "device":
      return `device ${event.id}${event.current ? " (this device)" : ""}: created ${dayLabel(event.created)}, last seen ${event.lastSeen ? dayLabel(event.lastSeen) : "never"}`;
    case "unlinked":
      return event.current
        ? "This device is unlinked from the account: its profile can no longer send or receive, and can be deleted."
        : `Unlinked device ${event.deviceId}: it can no longer read or send this account's messages.`;
    case "devicesChanged":
      return (
        [
          ...event.added.map(
            (id) =>
              `A new device (id ${id}) was linked to your account. If that was not you, run zimchat-chat unlink ${id} on your primary device.`,
          ),
          ...event.removed.map((id) => `Device ${id} was unlinked from your account.`),
        ].join("\n") || null
      );
    case "group":
      return `${printable(event.title)} (group ${event.id})${event.member ? "" : " [you were removed]"}: ${list(event.members.map((m) => (event.admins.includes(m) ? `${m} (admin)` : m)))}`;
    case "groupsListed":
      return event.count
        ? null
        : "This device knows no groups yet: zimchat-chat group create <title> <members...> makes one.";
    case "groupChanged":
      switch (event.action) {
        case "created":
          return `Created the group ${printable(event.group.title)} (id ${event.group.id}) with ${list(event.members)}.`;
        case "added":
          return `Added ${list(event.users)} to ${printable(event.group.title)}. Members: ${list(event.members)}.`;
        case "removed":
          return `Removed ${list(event.users)} from ${printable(event.group.title)}: they cannot read what is sent from now on. Members: ${list(event.members)}.`;
        case "bridged":
          return `${list(event.users)} now bridges ${printable(event.group.title)}. Members: ${list(event.members)}.`;
        case "left":
          return `You left ${printable(event.group.title)}: you no longer receive its messages. Members: ${list(event.members)}.`;
        case "unbridged":
          return `Removed the bridge ${list(event.users)} from ${printable(event.group.title)}: it cannot read what is sent from now on. Members: ${list(event.members)}.`;
        default:
          return missingCase(event.action);
      }
    case "bridge":
      // The banner is the SDK's text, already made one printable line.
      return `${inGroup(event.group)}${event.banner}`;
    case "bridgesChanged":
      return [...event.notices, ...event.banners].map((line) => `${inGroup(event.group)}${line}`).join("\n");
    case "groupUpdated": {
      const by = event.byThisAccount ? "You (on another device)" : event.by;
      const title = printable(event.group.title);
      if (event.left && event.byThisAccount)
        return `You left the group ${title} (on another device): you no longer receive its messages.`;
      if (event.left) return `${by} removed you from the group ${title}: you no longer receive its messages.`;
      // A member who left sends the group without itself.
      if (!event.added.length && event.removed.length === 1 && event.removed[0] === event.by)
        return `${by} left ${title}.`;
      if (event.joined)
        return `${by} added you to the group ${title} (id ${event.group.id}). Members: ${list(event.members)}.`;
      return (
        [
          ...(event.added.length ? [`${by} added ${list(event.added)} to ${title}.`] : []),
          ...(event.removed.length ? [`${by} removed ${list(event.removed)} from ${title}.`] : []),
        ].join("\n") || `${by} changed the group ${title}.`
      );
    }
    case "webReady":
      return (
        `ZimChat web client for ${event.profile}${event.registered ? "" : " (no device yet: register on the page)"}\n` +
        `Open in a browser on this machine (the link holds this run's login token: do not share it):\n  ${event.url}\n` +
        "Keep this running while you chat; Ctrl-C stops it."
      );
    case "webStopped":
      return "ZimChat web client stopped.";
    case "warning":
      return `warning: ${event.message}`;
    case "error":
      return `zimchat-chat: ${event.message}`;
    default:
      return missingCase(event);
  }
}
