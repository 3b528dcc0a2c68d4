import { HttpError } from "../errors.js";
import { deviceKey, type MailboxUsage } from "../stores/envelope-store.js";

/** The per-recipient-device mailbox caps (config `mailboxMaxEnvelopes`, `mailboxMaxBytes`). */
export interface MailboxCaps {
  maxEnvelopes: number;
  maxBytes: number;
}

/** Seconds a refused sender is told to wait: the recipient drains its queue when it next comes online. */
const retryAfterSeconds = 3600;

/**
 * Running mailbox usage through one group commit: starts from the stored
 * counts (read once per batch, no scan) and adds each accepted send, so two
 * sends in one batch cannot together overshoot a cap.
 */
export class MailboxBudget {
  constructor(
    private readonly caps: MailboxCaps,
    private readonly usage: Map<string, MailboxUsage>,
  ) {}

  /**
   * Takes room for one send's envelopes, all or none.
   * @returns the recipient accounts whose mailbox (some device of it) is full, empty when the send fits
   */
  take(envelopes: { accountId: string; deviceId: number; size: number }[]): string[] {
    const added = new Map<string, MailboxUsage & { accountId: string }>();
    for (const e of envelopes) {
      const key = deviceKey(e.accountId, e.deviceId);
      const a = added.get(key) ?? { accountId: e.accountId, envelopes: 0, bytes: 0 };
      a.envelopes += 1;
      a.bytes += e.size;
      added.set(key, a);
    }
    const full = new Set<string>();
    for (const [key, a] of added) {
      const u = this.usage.get(key) ?? { envelopes: 0, bytes: 0 };
      if (u.envelopes + a.envelopes > this.caps.maxEnvelopes || u.bytes + a.bytes > this.caps.maxBytes)
        full.add(a.accountId);
    }
    if (full.size) return [...full];
    for (const [key, a] of added) {
      const u = this.usage.get(key) ?? { envelopes: 0, bytes: 0 };
      this.usage.set(key, { envelopes: u.envelopes + a.envelopes, bytes: u.bytes + a.bytes });
    }
    return [];
  }
}

/**
 * 507 `mailbox_full`: the recipient's device holds as many envelopes or bytes
 * as the server keeps for one device. Not 429 (the sender sent nothing too
 * fast, and SDKs fall back or back off on 429) and not 413 (the request
 * itself is fine): the server cannot store more for that recipient until it
 * acknowledges what is queued. `Retry-After` is a hint, since only the
 * recipient can free room.
 */
export function mailboxFull(recipients: string[], shape: "single" | "multi"): HttpError {
  const message = "The recipient's mailbox is full until it receives what is queued";
  const details =
    shape === "multi" ? { recipients: recipients.map((uuid) => ({ uuid })), retryAfterSeconds } : { retryAfterSeconds };
  return new HttpError("mailbox_full", message, details, { "Retry-After": String(retryAfterSeconds) });
}
