import { missingCase } from "@zimchat/protocol";
import type { CliEvent } from "./cli-events.js";

const pad = (n: number): string => String(n).padStart(2, "0");

/** A message time as people read it in a chat: `HH:MM`, local time. */
export function clockTime(timestamp: number): string {
  const d = new Date(timestamp);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The commands `chat` understands besides text. */
export const chatHelp = "/safety shows the safety number, /quit leaves";

const messages = (n: number): string => (n === 1 ? "1 message" : `${n} messages`);

/** Which stream an event goes to in human mode. */
export function isDiagnostic(event: CliEvent): boolean {
  return event.type === "error" || event.type === "warning" || event.type === "decryptionFailed";
}

/**
 * The text people see for an event, or null when it shows nothing (an empty
 * queue is only worth a line when nothing arrived).
 */
export function renderEvent(event: CliEvent): string | null {
  switch (event.type) {
    case "registered":
      return `Registered ${event.username} on ${event.server} (account ${event.uuid}, device ${event.deviceId}).\nProfile: ${event.profile}`;
    case "whoami":
      return `${event.username} on ${event.server} (account ${event.uuid}, device ${event.deviceId}).\nProfile: ${event.profile}`;
    case "message":
      return `[${clockTime(event.timestamp)}] ${event.from}: ${event.text}`;
    case "history":
      return `[${clockTime(event.timestamp)}] ${event.direction === "out" ? "you" : event.user}: ${event.text}`;
    case "sent":
      return `[${clockTime(event.timestamp)}] you → ${event.to}: ${event.text}`;
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
      return `Chatting with ${event.user}. Type a message and press Enter; ${chatHelp}.`;
    case "warning":
      return `warning: ${event.message}`;
    case "error":
      return `zimchat-chat: ${event.message}`;
    default:
      return missingCase(event);
  }
}
