/**
 * Identity-key changes as the app sees them: one `identityChanged` per
 * contact whose committed key actually changed, and a refused send that
 * still records the new key it was refused for.
 */
import type { DeviceStore } from "./store/device-store.js";
import type { StoreQueue } from "./task-queue.js";
import { withRecord } from "./task-queue.js";
import { UntrustedIdentityError } from "./errors.js";

/** What `identityChanged` carries. */
export interface IdentityChangedEvent {
  uuid: string;
  /** Sending to them needs re-verification (the contact had been verified). */
  blocked: boolean;
}

/**
 * Collects the identity-store changes libsignal makes while tasks run and
 * reports them once their batch is settled: one event per contact whose
 * committed key differs from the key before the first change. A send to
 * devices whose sessions hold different keys makes libsignal save each
 * session's key in turn; that is one change for the app, not one per
 * device. A change that was rolled back (a refused message) is no change.
 */
export class IdentityChangeNotifier {
  /** Each changed contact's key before the first change since the last report. */
  private readonly before = new Map<string, Uint8Array>();
  private scheduled = false;

  constructor(
    private readonly store: DeviceStore,
    private readonly tasks: StoreQueue,
    private readonly emit: (event: IdentityChangedEvent) => void,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** The identity store replaced `uuid`'s key `previous` (called inside a running task). */
  noticed(uuid: string, previous: Uint8Array): void {
    if (!this.before.has(uuid)) this.before.set(uuid, previous);
    if (this.scheduled) return;
    this.scheduled = true;
    // A task queued now runs in a later batch: the change is committed or rolled back by then, and its result is
    // emitted only after that task's own commit.
    this.tasks.run(() => this.take()).then((events) => events.forEach((e) => this.emit(e)), this.onError);
  }

  /**
   * The changes noticed so far, as they stand in the store now (call inside a
   * task, after the work whose changes they are; emit after its commit).
   * Taken changes are not reported again.
   */
  take(): IdentityChangedEvent[] {
    this.scheduled = false;
    const events: IdentityChangedEvent[] = [];
    for (const [changed, key] of this.before) {
      const now = this.store.getIdentity(changed);
      if (now && !Buffer.from(now.publicKey).equals(Buffer.from(key)))
        events.push({ uuid: changed, blocked: now.blocked });
    }
    this.before.clear();
    return events;
  }
}

/**
 * The refusal of a send to a contact whose new identity key is blocked
 * (the contact had been verified). The new key, as the identity store just
 * recorded it (pending: unverified, blocked), is kept although the refused
 * task rolls back, so `safetyNumber` shows the new number and `verify` of
 * that number lifts the block.
 */
export function refusedIdentityChange(store: DeviceStore, uuid: string): UntrustedIdentityError {
  const pending = store.getIdentity(uuid);
  const error = new UntrustedIdentityError(uuid);
  return pending ? withRecord(error, () => store.saveIdentity(pending)) : error;
}
