/**
 * Sends to users of other servers that this homeserver queued (their server
 * did not answer in time): the content is kept in the device store, under
 * the send's id, until the homeserver gives up on it with a
 * `remote-delivery-failed` event. A device change on the other side
 * (`mismatched_devices`, `stale_devices`) is repaired and the content
 * re-encrypted and sent again, as after a 409/410 on a direct send; any
 * other reason, or a re-send that fails, reaches the app as
 * `remoteDeliveryFailed`. Kept contents older than {@link keepPendingMs} are
 * dropped (the homeserver's own retries end long before). A group message
 * to a member of another server (relayed from a multi-recipient upload) is
 * kept the same way, with its group, and re-sent to that member alone
 * through the group's sender key.
 */
import { remoteDeliveryFailedSchema, type RemoteDeliveryFailed } from "@zimchat/protocol";
import type { ClientContext } from "./client-context.js";
import { contentSchema, type Content } from "./content.js";
import type { Outbox } from "./outbox.js";
import { isRetryable } from "./send-retry.js";
import type { Sessions } from "./sessions.js";

/** How long the content of a queued send is kept at most. */
export const keepPendingMs = 30 * 24 * 60 * 60 * 1000;

const prefix = "remoteSend:";

/** A queued send as the store keeps it. */
export interface PendingRemoteSend {
  uuid: string;
  server: string;
  content: Content;
  at: number;
  /** A group message (its group id): re-sent through the group, not 1:1. */
  group?: string;
}

/** Re-sends a group message to one member of the group (see group-messaging.ts). */
export type GroupResend = (groupId: string, uuid: string, content: Content) => Promise<void>;

/** The contents of queued sends to other servers, in the device store (`remoteSend:<id>`). */
export class PendingRemoteSends {
  constructor(private readonly ctx: Pick<ClientContext, "store">) {}

  /** Keeps a queued send's content (run inside a store task). Drops expired ones meanwhile. */
  remember(id: string, uuid: string, server: string, content: Content, now = Date.now(), group?: string): void {
    const { store } = this.ctx;
    for (const [key, value] of store.valuesWithPrefix(prefix)) {
      if ((JSON.parse(value) as PendingRemoteSend).at < now - keepPendingMs) store.deleteValue(key);
    }
    const pending: PendingRemoteSend = { uuid, server, content, at: now, ...(group ? { group } : {}) };
    store.setValue(`${prefix}${id}`, JSON.stringify(pending));
  }

  /** A queued send's content, or null when this device does not know it (or it no longer parses). */
  get(id: string): PendingRemoteSend | null {
    const value = this.ctx.store.getValue(`${prefix}${id}`);
    if (!value) return null;
    const pending = JSON.parse(value) as PendingRemoteSend;
    const content = contentSchema.safeParse(pending.content);
    return content.success ? { ...pending, content: content.data } : null;
  }

  forget(id: string): void {
    this.ctx.store.deleteValue(`${prefix}${id}`);
  }
}

/** Handles `remote-delivery-failed` events (see the file comment). */
export class RemoteDeliveryFailures {
  constructor(
    private readonly ctx: ClientContext,
    private readonly sessions: Sessions,
    private readonly outbox: Outbox,
    private readonly resendToGroupMember: GroupResend,
  ) {}

  /**
   * Repairs and re-sends, or reports, one failed queued send. Resolves once
   * it is handled (the caller then acknowledges the event); rejects when the
   * re-send failed without an answer (the event comes again on the next
   * connection and is retried then).
   */
  async handle(payload: unknown): Promise<void> {
    const { events, tasks, servers, store, signal } = this.ctx;
    const parsed = remoteDeliveryFailedSchema.safeParse(payload);
    if (!parsed.success) {
      events.emit("warning", new Error("the homeserver sent a remote-delivery-failed event that does not parse"));
      return;
    }
    const failure = parsed.data;
    const known = this.outbox.pendingRemote.get(failure.id);
    // Only a send this device made to that account on that server is re-sent.
    const pending = known && known.uuid === failure.destination && known.server === failure.server ? known : null;
    const repairable = failure.reason === "mismatched_devices" || failure.reason === "stale_devices";
    let error: unknown;
    if (repairable && servers.remoteServerOf(failure.destination) === failure.server) {
      const mismatch = mismatchOf(failure);
      await tasks.run(async () => {
        if (mismatch.missingDevices || mismatch.extraDevices || mismatch.staleDevices)
          await this.sessions.fixDevices([mismatch]);
        // No device lists: every session with the account is forgotten, and the re-send starts over from its bundles.
        else for (const id of store.sessionDevices(failure.destination)) signal.forgetSession(failure.destination, id);
      });
      if (pending) {
        try {
          if (pending.group) await this.resendToGroupMember(pending.group, failure.destination, pending.content);
          else await this.outbox.sendContent(failure.destination, pending.content);
          await tasks.run(async () => this.outbox.pendingRemote.forget(failure.id));
          return;
        } catch (resendError) {
          if (isRetryable(resendError)) throw resendError;
          error = resendError;
        }
      }
    }
    await tasks.run(async () => this.outbox.pendingRemote.forget(failure.id));
    // Receipts and other content without a message are not the app's concern.
    if (pending && pending.content.text === undefined && !pending.content.attachment) return;
    events.emit("remoteDeliveryFailed", {
      id: failure.id,
      to: failure.destination,
      server: failure.server,
      reason: failure.reason,
      ...(pending ? { timestamp: pending.content.timestamp } : {}),
      ...(pending?.content.text !== undefined ? { text: pending.content.text } : {}),
      ...(error !== undefined ? { error } : {}),
    });
  }
}

/** The device lists of a failure, as a 409/410 would carry them. */
function mismatchOf(failure: RemoteDeliveryFailed): {
  uuid: string;
  missingDevices?: number[];
  extraDevices?: number[];
  staleDevices?: number[];
} {
  return {
    uuid: failure.destination,
    ...(failure.missingDevices?.length ? { missingDevices: failure.missingDevices } : {}),
    ...(failure.extraDevices?.length ? { extraDevices: failure.extraDevices } : {}),
    ...(failure.staleDevices?.length ? { staleDevices: failure.staleDevices } : {}),
  };
}
