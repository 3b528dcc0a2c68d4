/** Pure helpers for the message list: merging updates in, ordering statuses, showing times. */
import type { WebMessage, WebMessageStatus } from "./api-types";

const progress: Record<WebMessageStatus, number> = { queued: 0, sent: 1, failed: 1, delivered: 2, received: 2 };

/** The further along of two statuses (an older answer never moves a message back from delivered to sent). */
export function laterStatus(a: WebMessageStatus, b: WebMessageStatus): WebMessageStatus {
  return progress[b] > progress[a] ? b : a;
}

/** `list` with `message` added at the end, or merged into the message with its id. */
export function upsertMessage(list: WebMessage[], message: WebMessage): WebMessage[] {
  const at = list.findIndex((m) => m.id === message.id);
  if (at < 0) return [...list, message];
  const old = list[at] as WebMessage;
  const merged = { ...old, ...message, status: laterStatus(old.status, message.status) };
  return [...list.slice(0, at), merged, ...list.slice(at + 1)];
}

/** `list` with the status of message `id` moved forward. */
export function withStatus(list: WebMessage[], id: string, status: WebMessageStatus): WebMessage[] {
  return list.map((m) => (m.id === id ? { ...m, status: laterStatus(m.status, status) } : m));
}

/** A timestamp as the daemon sends it (milliseconds or an ISO date) as a Date. */
export function toDate(at: number | string): Date {
  return new Date(at);
}

/** "14:05" today, "3 Dec 14:05" on another day. */
export function shortTime(at: number | string): string {
  const date = toDate(at);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

/** Throws for an event type the page does not know; as a parameter type, fails the build where a case is missing. */
export function missingCase(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`);
}

/** A size in bytes as people read it: "512 B", "14.2 KB", "3.1 MB". */
export function fileSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
