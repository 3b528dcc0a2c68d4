import type { ZimClient } from "@zimchat/client";

/**
 * Whom the bot answers:
 * - `"tofu"`: everyone; each user's first identity key is trusted on first use.
 * - `{ allow }`: only these users (usernames or account ids). Messages from
 *   anyone else are decrypted (so sessions stay healthy) but never reach a
 *   handler, and get no reply. With `verifiedOnly`, an allowed user must also
 *   be verified on the bot's side (`bot.verify(user, safetyNumber)`), and a
 *   changed key makes them unverified until verified again.
 *
 * A username is resolved to its account id by the homeserver (once, then
 * cached); `verifiedOnly` is what binds an entry to a key the server cannot swap.
 */
export type BotTrust = "tofu" | { allow: string[]; verifiedOnly?: boolean };

/** What the bot does when a user's identity key changes (their safety number with the bot changes). */
export type IdentityChangePolicy =
  /** Keep talking to the new key, unverified (libsignal's trust on first use). */
  | "accept"
  /**
   * Stop dispatching that user's messages and refuse replies until the user is verified again (`bot.verify`) or
   * accepted (`bot.acceptIdentityChange`).
   */
  | "block";

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** How long to wait before looking up an allowlisted username that was not found, again. */
const retryLookupMs = 5_000;

/** The allowlist, with usernames resolved to account ids as users turn up. */
export class Allowlist {
  private readonly uuids = new Set<string>();
  private pending: string[] = [];
  private lastLookup = 0;

  constructor(entries: string[]) {
    for (const entry of entries) {
      const e = entry.replace(/^@/, "").trim();
      if (uuidPattern.test(e.toLowerCase())) this.uuids.add(e.toLowerCase());
      else if (e) this.pending.push(e);
    }
  }

  /** How many entries it has. */
  get size(): number {
    return this.uuids.size + this.pending.length;
  }

  /** Whether an account is allowed (looking up usernames not yet resolved, at most every few seconds). */
  async allows(client: ZimClient, uuid: string): Promise<boolean> {
    if (this.uuids.has(uuid)) return true;
    if (this.pending.length && Date.now() - this.lastLookup >= retryLookupMs) {
      this.lastLookup = Date.now();
      const still: string[] = [];
      for (const name of this.pending) {
        try {
          this.uuids.add(await client.resolve(name));
        } catch {
          // Not registered yet (or the server is unreachable): try again later.
          still.push(name);
        }
      }
      this.pending = still;
    }
    return this.uuids.has(uuid);
  }
}
