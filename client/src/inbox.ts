/**
 * Receiving: envelopes are decrypted in order, each in a savepoint of the
 * batch transaction that also records its id, so a crash before the ack
 * means a redelivery that is recognised and not shown twice. Events are
 * emitted after the commit, then the batch is acknowledged; delivery
 * receipts and key-transparency checks of new senders follow, off the
 * receive path.
 */
import { limits, missingCase, type Envelope, type SocketResult } from "@zimchat/protocol";
import type { StoredAttachmentPointer } from "./attachments.js";
import { localDevice, checkKeyLog, type ClientContext } from "./client-context.js";
import { bridgesChange } from "./bridges.js";
import { decodeContent, type Content, type GroupState } from "./content.js";
import { ApiError, apiError, DecryptionFailureReason, decryptionFailure, SealedSendingPausedError } from "./errors.js";
import type { GroupUpdatedEvent, MessageEvent, ZimClientEvents } from "./events.js";
import { applyGroupUpdate, bindMembers, groupConversation, inOwnView } from "./groups.js";
import type { IdentityChangedEvent, IdentityChangeNotifier } from "./identity-changes.js";
import { MessageDedup } from "./message-dedup.js";
import type { NameClaim, Names } from "./names.js";
import type { Outbox } from "./outbox.js";
import { isRetryable } from "./send-retry.js";
import { decryptionFailureReason, type OpenedEnvelope } from "./signal/index.js";

/** Member names an admin's group change may ask this device to check (look-ups), at most. */
const maxNameChecks = 50;

/** What processing one envelope produced. */
type ReceiveResult =
  | { kind: "message"; message: MessageEvent; claim?: NameClaim }
  | { kind: "receipt"; receipt: ZimClientEvents["deliveryReceipt"][0] }
  | {
      kind: "group";
      update: GroupUpdatedEvent;
      /** The group's state before the change (null: new to this device), for `bridgesChanged`. */
      before: GroupState | null;
      claim?: NameClaim;
      memberNames?: Content["memberNames"];
    }
  | { kind: "failed"; failure: ZimClientEvents["decryptionFailed"][0] }
  | { kind: "skipped" };

export class Inbox {
  private readonly dedup: MessageDedup;
  private readonly pendingReceipts = new Map<string, number[]>();
  private receiptTimer: NodeJS.Timeout | null = null;
  /** The last batch's events being emitted. */
  private emitting: Promise<void> = Promise.resolve();
  /** Ids of committed (durable) batches that reached their ack in this turn: acknowledged together. */
  private pendingAck: { ids: string[]; sent: Promise<void> } | null = null;

  constructor(
    private readonly ctx: ClientContext,
    private readonly outbox: Outbox,
    private readonly identityChanges: IdentityChangeNotifier,
    private readonly names: Names,
  ) {
    this.dedup = new MessageDedup(ctx.store);
  }

  /** Fetches the stored queue over REST and processes it. @returns how many envelopes were processed */
  async poll(): Promise<number> {
    let total = 0;
    for (;;) {
      const page = await this.ctx.api.fetchMessages();
      await this.processEnvelopes(page.envelopes);
      total += page.envelopes.length;
      if (!page.more) return total;
    }
  }

  /** Decrypts envelopes in the order given, each in its own savepoint, emits their events, then acknowledges them. */
  async processEnvelopes(batch: Envelope[]): Promise<void> {
    const { keyLog, store, settings } = this.ctx;
    await this.pinRemoteTrustRoots(batch);
    // Committed with whatever else is queued (one fsync); a savepoint per envelope.
    const { results, identityChanges } = await this.ctx.tasks.run(async () => {
      const out: ReceiveResult[] = [];
      for (const envelope of batch) out.push(await this.receiveOne(envelope));
      // Key changes these envelopes made are told before their messages.
      return { results: out, identityChanges: this.identityChanges.take() };
    });
    // Batches are told in the order they were committed, whatever name look-ups they wait for.
    const turn = this.emitting.then(() => this.emitResults(identityChanges, results));
    this.emitting = turn.catch(() => undefined);
    await turn;
    await this.acknowledge(batch.map((e) => e.id));
    // Keys of new contacts (PreKey messages, sealed-sender certificates) are checked after the fact, off the receive
    // path.
    if (keyLog) {
      const senders = new Set(
        results.flatMap((r) =>
          r.kind === "message"
            ? [r.message.from]
            : r.kind === "receipt"
              ? [r.receipt.from]
              : r.kind === "group"
                ? [r.update.by]
                : [],
        ),
      );
      senders.delete(localDevice(this.ctx).uuid);
      for (const uuid of senders) {
        const known = store.getIdentity(uuid);
        if (known && keyLog.isDue(uuid, known.publicKey))
          this.ctx.inBackground(checkKeyLog(this.ctx, uuid, known.publicKey));
      }
    }
    this.recheckRemoteTrustRoots(batch, results);
    if (settings.receiptDelayMs <= 0) this.flushReceipts();
    else this.receiptTimer ??= setTimeout(() => this.flushReceipts(), settings.receiptDelayMs);
  }

  /**
   * Pins, on first contact, the trust root of each other server that relays
   * sealed envelopes in this batch (before the batch's transaction: it asks
   * the homeserver). A server that refuses to say (4xx) has its users'
   * sealed messages refused for want of a root; no answer at all (network,
   * 5xx, 429) leaves the batch unacknowledged, to be redelivered.
   */
  private async pinRemoteTrustRoots(batch: Envelope[]): Promise<void> {
    const { sealed, servers, home } = this.ctx;
    // Content from other servers may name this homeserver (group members): its federation name is learned first.
    if (home.cachedName() === null && batch.some((e) => e.sourceServer)) await home.name().catch(() => undefined);
    const unpinned = new Set<string>();
    for (const envelope of batch) {
      const server = envelope.type === "sealed" ? servers.normalize(envelope.sourceServer) : null;
      if (server !== null && !sealed.remoteTrustRoot(server)) unpinned.add(server);
    }
    for (const server of unpinned) {
      try {
        await this.outbox.checkRemoteTrustRoot(server);
      } catch (error) {
        if (!(error instanceof ApiError) || isRetryable(error) || error.isRateLimited()) throw error;
        this.ctx.events.emit(
          "warning",
          new Error(`no trust root for ${server}: its users' sealed messages are refused`, { cause: error }),
        );
      }
    }
  }

  /**
   * A sealed message from another server's user whose certificate the pinned
   * root of that server does not sign: that server's root is compared again
   * (in the background), so that a change is reported (`trustRootChanged`).
   */
  private recheckRemoteTrustRoots(batch: Envelope[], results: ReceiveResult[]): void {
    const servers = new Set<string>();
    batch.forEach((envelope, i) => {
      const result = results[i];
      const server = this.ctx.servers.normalize(envelope.sourceServer);
      if (
        server !== null &&
        envelope.type === "sealed" &&
        result?.kind === "failed" &&
        result.failure.reason === DecryptionFailureReason.InvalidCertificate &&
        this.ctx.sealed.remoteTrustRoot(server)
      )
        servers.add(server);
    });
    for (const server of servers)
      this.ctx.inBackground(
        this.outbox.checkRemoteTrustRoot(server, true).catch((error: unknown) => {
          // Reported as `trustRootChanged`.
          if (!(error instanceof SealedSendingPausedError)) throw error;
        }),
      );
  }

  /** Emits a committed batch's events: key changes first, then each result, with the names it claimed checked. */
  private async emitResults(identityChanges: IdentityChangedEvent[], results: ReceiveResult[]): Promise<void> {
    const { events, settings } = this.ctx;
    for (const change of identityChanges) events.emit("identityChanged", change);
    // Names claimed inside the content are checked (a look-up for an account not seen before) before they are shown.
    for (const result of results) await this.attachNames(result);
    for (const result of results) {
      switch (result.kind) {
        case "message":
          events.emit("message", result.message);
          if (settings.sendReceipts && !result.message.outgoing)
            this.queueReceipt(result.message.from, result.message.timestamp);
          break;
        case "receipt":
          events.emit("deliveryReceipt", result.receipt);
          break;
        case "group": {
          events.emit("groupUpdated", result.update);
          // Names as attachNames verified them: the bot is named in the disclosure where this device knows it.
          const bridges = bridgesChange(result.before, result.update.group, (uuid) => this.names.nameOf(uuid));
          if (bridges) events.emit("bridgesChanged", bridges);
          break;
        }
        case "failed":
          events.emit("decryptionFailed", result.failure);
          break;
        case "skipped":
          break;
        default:
          missingCase(result);
      }
    }
  }

  /** Adds the verified (or marked unverified) names the content claimed to its event. */
  private async attachNames(result: ReceiveResult): Promise<void> {
    if (result.kind === "message" && result.claim) {
      result.message.senderName = await this.names.verify(result.message.from, result.claim);
    } else if (result.kind === "group") {
      const { update } = result;
      const byName = result.claim ? await this.names.verify(update.by, result.claim) : null;
      const members = new Set([...update.group.members, ...update.removed]);
      // An admin's word on other members' usernames is a claim too: each is looked up (a bounded number per change).
      for (const { uuid, username } of (result.memberNames ?? []).slice(0, maxNameChecks)) {
        if (members.has(uuid) && uuid !== update.by && !this.names.nameOf(uuid))
          await this.names.verify(uuid, { username });
      }
      update.names = { ...this.names.known(members), ...(byName ? { [update.by]: byName } : {}) };
    }
  }

  private queueReceipt(from: string, timestamp: number): void {
    this.pendingReceipts.set(from, [...(this.pendingReceipts.get(from) ?? []), timestamp]);
  }

  /** Sends every held receipt now, one message per sender (100 timestamps each at most). */
  flushReceipts(): void {
    if (this.receiptTimer) clearTimeout(this.receiptTimer);
    this.receiptTimer = null;
    for (const [uuid, timestamps] of this.pendingReceipts) {
      for (let i = 0; i < timestamps.length; i += 100) {
        const receipt = { timestamps: timestamps.slice(i, i + 100) };
        this.ctx.inBackground(
          this.outbox.sendContent(uuid, {
            v: 1,
            timestamp: Date.now(),
            receipt,
            accessKey: localDevice(this.ctx).accessKey,
          }),
        );
      }
    }
    this.pendingReceipts.clear();
  }

  /**
   * Acknowledges committed envelopes. Batches that get here in the same turn of the event loop (they were committed
   * together) share one ack: fewer round trips, and fewer deletes for the server.
   */
  private acknowledge(ids: string[]): Promise<void> {
    if (!ids.length) return Promise.resolve();
    if (this.pendingAck) {
      this.pendingAck.ids.push(...ids);
      return this.pendingAck.sent;
    }
    const pending = { ids: [...ids], sent: Promise.resolve() };
    pending.sent = new Promise<void>((resolve) => process.nextTick(resolve)).then(async () => {
      this.pendingAck = null;
      for (let i = 0; i < pending.ids.length; i += limits.maxAckIds)
        await this.sendAck(pending.ids.slice(i, i + limits.maxAckIds));
    });
    this.pendingAck = pending;
    return pending.sent;
  }

  private async sendAck(ids: string[]): Promise<void> {
    const socket = this.ctx.connections.authenticated;
    if (socket?.connected) {
      const result = (await socket.emitWithAck("ack", { ids })) as SocketResult<unknown>;
      if (!result.ok) throw apiError(result.status, result.error);
      return;
    }
    await this.ctx.api.ack(ids);
  }

  /**
   * Decrypts one envelope and stores its result, the advanced session and
   * its id (inside the batch transaction, in a savepoint of its own): a crash
   * before the ack means a redelivery, recognised by id and not shown twice.
   * Events are emitted by the caller, after the commit.
   */
  private async receiveOne(envelope: Envelope): Promise<ReceiveResult> {
    const { store, signal, sealed, servers } = this.ctx;
    if (store.hasProcessed(envelope.id)) return { kind: "skipped" };
    let from = envelope.sourceUuid;
    // The server the envelope says its sender belongs to (null: this homeserver): the one that relayed it. A sealed
    // envelope's certificate is checked against that server's pinned trust root only, and its sender must be bound to
    // that server: a server's root speaks for its own users only.
    const claimed = servers.normalize(envelope.sourceServer);
    const trustRoot = claimed === null ? sealed.trustRoot() : sealed.remoteTrustRoot(claimed);
    try {
      return await store.transaction(async (): Promise<ReceiveResult> => {
        // Before decrypting anything: an account bound to another server is refused (a server claiming someone else's
        // user); one never seen is bound to the server the envelope names.
        const checkSender = (uuid: string): void => {
          try {
            servers.bind(uuid, claimed, envelope.id);
          } catch (error) {
            throw Object.assign(
              decryptionFailure(DecryptionFailureReason.ServerMismatch, (error as Error).message, error),
              { from: uuid },
            );
          }
        };
        const opened = await signal.open(envelope, trustRoot, checkSender);
        from = opened.from;
        let content: Content;
        try {
          content = decodeContent(opened.plaintext);
        } catch (error) {
          throw decryptionFailure(DecryptionFailureReason.InvalidContent, "invalid content", error);
        }
        store.markProcessed(envelope.id, Date.now());
        return this.handleContent(envelope, opened, content);
      });
    } catch (error) {
      // The failed envelope's changes are rolled back; remember its id so a redelivery is not retried.
      store.markProcessed(envelope.id, Date.now());
      // A refused sealed message names its claimed sender (the certificate's, which the refusal is about).
      from ??= (error as { from?: string } | null)?.from;
      return {
        kind: "failed",
        failure: { envelopeId: envelope.id, ...(from ? { from } : {}), reason: decryptionFailureReason(error), error },
      };
    }
  }

  /** Applies decrypted content: access keys, sender keys, group changes, sent transcripts, receipts, messages. */
  private async handleContent(
    envelope: Envelope,
    opened: Omit<OpenedEnvelope, "plaintext">,
    content: Content,
  ): Promise<ReceiveResult> {
    const { store, groups } = this.ctx;
    const { from, fromDevice, sealed } = opened;
    const me = localDevice(this.ctx).uuid;
    const own = from === me;
    if (content.accessKey && !own) this.ctx.sealed.rememberAccessKey(from, content.accessKey);
    if (content.senderKey)
      await this.ctx.signal.processSenderKeyDistribution(
        { uuid: from, deviceId: fromDevice },
        content.senderKey.message,
      );
    if (content.groupUpdate) {
      const current = groups.get(content.groupUpdate.id);
      const change = applyGroupUpdate(current, content.groupUpdate, from, me);
      if (!change)
        throw decryptionFailure(
          DecryptionFailureReason.NotAGroupMember,
          "group change refused: not from an admin, or stale",
        );
      // Members on other servers (federation): bound where the admin says, unless this device bound them already.
      bindMembers(change.group, from, this.ctx.servers);
      change.group = inOwnView(change.group, this.ctx.servers);
      groups.save(change.group);
      // Someone left: this device's sender key for the group is replaced before its next message.
      if (change.removed.length) groups.rotate(change.group.id);
      const left = !change.group.members.includes(me);
      return {
        kind: "group",
        update: { group: change.group, by: from, added: change.added, removed: change.removed, left },
        before: current,
        ...(content.profile ? { claim: content.profile } : {}),
        ...(content.memberNames ? { memberNames: content.memberNames } : {}),
      };
    }
    // A group message must come from a current member, through the group's sender key or a sync from this account.
    const groupId = content.group?.id;
    if (opened.senderKey && !groupId)
      throw decryptionFailure(DecryptionFailureReason.NotAGroupMember, "a sender-key message without a group");
    if (groupId) {
      const group = groups.get(groupId);
      if (!group || !group.members.includes(from) || (!opened.senderKey && !(own && content.sync))) {
        throw decryptionFailure(DecryptionFailureReason.NotAGroupMember, "group message from a non-member");
      }
    }
    if (content.receipt)
      return { kind: "receipt", receipt: { from, fromDevice, timestamps: content.receipt.timestamps } };
    if (content.text === undefined && !content.attachment) return { kind: "skipped" };
    const outgoing = own && content.sync !== undefined;
    if (own && !outgoing) return { kind: "skipped" };
    const conversation = groupId ? groupConversation(groupId) : outgoing ? content.sync?.destination : from;
    if (!conversation) return { kind: "skipped" };
    // This account's other device says which server the recipient belongs to: bound here too, unless this device
    // bound it elsewhere already (its own binding stands; the transcript is still shown).
    const syncServer = this.ctx.servers.normalize(content.sync?.server);
    if (outgoing && !groupId && syncServer !== null && !this.ctx.servers.conflicts(conversation, syncServer))
      this.ctx.servers.bind(conversation, syncServer);
    // The same message in a second envelope (a sender's retry that was stored twice): shown once.
    if (!this.dedup.firstSight(from, fromDevice, content)) return { kind: "skipped" };
    const text = content.text ?? "";
    const fromServer = this.ctx.servers.remoteServerOf(from);
    // The blob is on its sender's server (in a group too): recorded now, so a download later needs no binding.
    const attachment: StoredAttachmentPointer | undefined = content.attachment && {
      ...content.attachment,
      ...(fromServer ? { server: fromServer } : {}),
    };
    store.addMessage({
      id: envelope.id,
      peer: conversation,
      direction: outgoing ? "out" : "in",
      author: from,
      senderDeviceId: fromDevice,
      text,
      timestamp: content.timestamp,
      storedAt: Date.now(),
      ...(attachment ? { attachment } : {}),
    });
    return {
      kind: "message",
      message: {
        envelopeId: envelope.id,
        from,
        fromDevice,
        ...(fromServer ? { fromServer } : {}),
        conversation,
        ...(groupId ? { group: groupId } : {}),
        text,
        ...(attachment ? { attachment } : {}),
        timestamp: content.timestamp,
        sealed,
        outgoing,
      },
      ...(content.profile ? { claim: content.profile } : {}),
    };
  }
}
