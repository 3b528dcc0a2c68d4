/**
 * The receiving side's second line of defence against duplicates: a
 * message is shown once per (sender, message id inside the encrypted
 * content), even if it arrives in two envelopes (a sender that retried
 * against a server without idempotency keys, or re-encrypted a message).
 * Envelope-level redelivery is caught earlier, by envelope id.
 *
 * The ids live in the device store's processed-id table (so they survive
 * restarts, in the same transaction as the message), which is kept bounded:
 * entries older than {@link processedRetentionMs} or beyond
 * {@link processedMaxEntries} are pruned now and then.
 */
import type { Content } from "./content.js";
import type { DeviceStore } from "./store/device-store.js";

/** How long processed ids are remembered: longer than a server keeps an envelope (30 days by default). */
export const processedRetentionMs = 45 * 24 * 3600 * 1000;
/** At most this many processed ids are remembered (the newest). */
export const processedMaxEntries = 100_000;
/** Prune after this many new ids. */
const pruneEvery = 500;

/**
 * The key a shown message is remembered by: its id, or (older senders without one) the sender's device and timestamp,
 * as Signal does.
 */
export function shownMessageKey(from: string, fromDevice: number, content: Content): string {
  return content.id ? `msg:${from}:${content.id}` : `msg:${from}.${fromDevice}@${content.timestamp}`;
}

/** Remembers shown messages in a device store. */
export class MessageDedup {
  private marked = 0;

  constructor(private readonly store: DeviceStore) {}

  /**
   * True the first time a message is seen (and remembers it, in the
   * caller's store transaction); false for a duplicate, which is not shown.
   */
  firstSight(from: string, fromDevice: number, content: Content, now = Date.now()): boolean {
    const key = shownMessageKey(from, fromDevice, content);
    if (this.store.hasProcessed(key)) return false;
    this.store.markProcessed(key, now);
    if (++this.marked % pruneEvery === 0) this.store.pruneProcessed(now - processedRetentionMs, processedMaxEntries);
    return true;
  }
}
