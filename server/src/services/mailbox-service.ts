import { randomUUID } from "node:crypto";
import {
  envelopeTypeName,
  envelopeTypes,
  limits,
  type Envelope,
  type MultiRecipientResponse,
  type OutgoingMessage,
  type RecipientMismatch,
  type SendMessagesResponse,
} from "@zimchat/protocol";
import type { Bytes } from "../db/database.js";
import { HttpError } from "../errors.js";
import type { Metrics } from "../metrics/metrics.js";
import type { PluginHost } from "../plugins/plugin-host.js";
import type { AccountStore, DeviceRef } from "../stores/account-store.js";
import type { EnvelopeStore, NewEnvelope, NewSharedPayload, StoredEnvelope } from "../stores/envelope-store.js";
import type { IdempotencyStore, PendingStatement } from "../stores/idempotency-store.js";
import { Batcher, type Outcome } from "../util/batcher.js";
import { coarseExpiry, coarseTimestamp } from "../util/day.js";
import { unauthorized, type DevicePrincipal } from "./account-service.js";
import { MailboxBudget, mailboxFull, type MailboxCaps } from "./mailbox-caps.js";
import { assembleForRecipient, SharedPayloadRef, type ParsedMultiRecipient } from "./multi-recipient-message.js";
import type { RateLimiter } from "./rate-limiter.js";
import { SendIdempotency } from "./send-idempotency.js";
import { checkCiphertext, fromBase64 } from "./signal-keys.js";

/** An envelope committed for a device, in wire form, with its queue position. */
export interface Delivery {
  accountId: string;
  deviceId: number;
  seq?: number;
  envelope: Envelope;
}

/** Called after a batch commits, with every envelope it stored. */
export type DeliveryListener = (deliveries: Delivery[]) => void;

/**
 * A message with its decoded bytes. A multi-recipient one holds only the
 * recipient's header in `bytes` and refers to the shared part, stored once.
 */
type DecodedMessage = OutgoingMessage & { bytes: Bytes; shared?: SharedPayloadRef };

/** One send: envelopes for one or (multi-recipient) several destination accounts, committed together or not at all. */
interface SendItem {
  /**
   * The authenticated sending device, or null for a sealed-sender send
   * without credentials. It is excluded from the expected devices on a send
   * to its own account, and is the source of its non-sealed envelopes.
   */
  sender: DevicePrincipal | null;
  /**
   * Federation: the homeserver that relayed this send; `sender` is then an
   * account on that server (never "oneself"), and the envelopes carry the
   * server's name.
   */
  origin?: string | undefined;
  destinations: { uuid: string; messages: DecodedMessage[] }[];
  /** How refusals are reported: in the error's top-level fields, or per recipient in `recipients`. */
  shape: "single" | "multi";
  /** The client's idempotency key: a retry with it gets the first answer (see send-idempotency.ts). */
  idempotencyKey?: string | undefined;
}

interface AckItem {
  device: DevicePrincipal;
  ids: string[];
}

/** The wire form of a stored envelope. */
export function toWire(e: StoredEnvelope, content?: string): Envelope {
  const envelope: Envelope = {
    id: e.id,
    type: envelopeTypeName(e.type) ?? "whisper",
    serverTimestamp: e.serverTimestamp,
    content: content ?? Buffer.from(e.content).toString("base64"),
  };
  if (e.sourceAccountId !== null) envelope.sourceUuid = e.sourceAccountId;
  if (e.sourceDeviceId !== null) envelope.sourceDeviceId = e.sourceDeviceId;
  if (e.sourceServer !== null) envelope.sourceServer = e.sourceServer;
  return envelope;
}

/**
 * Per-device mailboxes. Sends and acknowledgements go through group commit:
 * concurrent requests share one transaction, and each request is answered
 * only after the transaction that holds its envelopes has committed.
 *
 * Plugins: before a send joins a batch, `beforeEnvelopeAccepted` is asked
 * once per recipient account (a refusal is 403 `refused_by_plugin` and
 * stores nothing; a failing plugin is skipped). After an acknowledgement
 * deletes envelopes, `envelopeDelivered` is told, without waiting.
 */
export class MailboxService {
  private readonly listeners = new Set<DeliveryListener>();
  private readonly sends: Batcher<SendItem, MultiRecipientResponse>;
  private readonly acks: Batcher<AckItem, number>;
  private readonly idempotency: SendIdempotency | undefined;

  constructor(
    private readonly envelopes: EnvelopeStore,
    private readonly accounts: AccountStore,
    private readonly limiter: RateLimiter,
    private readonly ttlMs: number,
    private readonly plugins: PluginHost,
    private readonly metrics?: Metrics,
    private readonly caps: MailboxCaps = { maxEnvelopes: 50_000, maxBytes: 256 * 1024 * 1024 },
    idempotencyStore?: IdempotencyStore,
  ) {
    this.idempotency = idempotencyStore && new SendIdempotency(idempotencyStore, ttlMs, metrics);
    this.sends = new Batcher((items) =>
      this.idempotency
        ? this.idempotency.run(items, (fresh, recordsFor) => this.commitSends(fresh, recordsFor))
        : this.commitSends(items),
    );
    this.acks = new Batcher((items) => this.commitAcks(items));
  }

  /** Subscribes to committed envelopes (the gateway pushes them). */
  onDelivery(listener: DeliveryListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Stores one envelope per destination device. The device set must equal the
   * destination's current devices (minus the sender's own device on a send to
   * oneself): 409 `mismatched_devices` otherwise, 410 `stale_devices` for a
   * wrong registration id (410 wins when both apply).
   */
  async send(
    sender: DevicePrincipal,
    destination: string,
    messages: OutgoingMessage[],
    idempotencyKey?: string,
  ): Promise<SendMessagesResponse> {
    await this.limiter.consume("send", `${sender.accountId}.${sender.deviceId}`);
    return this.submitSingle(sender, destination, decodeMessages(messages), idempotencyKey);
  }

  /**
   * A sealed-sender send without credentials: the same device rules as
   * {@link send}, every message must be `sealed`, and the envelopes are
   * stored with no source. An unknown destination is 401, like a wrong
   * access key. The caller checks the access key and the rate limit.
   */
  async sendSealed(
    destination: string,
    messages: OutgoingMessage[],
    idempotencyKey?: string,
  ): Promise<SendMessagesResponse> {
    const notSealed = messages.findIndex((m) => m.type !== "sealed");
    if (notSealed >= 0) {
      throw new HttpError("invalid_request", "Without credentials, every message must be sealed", {
        issues: [{ path: ["messages", notSealed, "type"], message: "must be sealed on a send without credentials" }],
      });
    }
    return this.submitSingle(null, destination, decodeMessages(messages), idempotencyKey);
  }

  /**
   * Fans one sealed-sender payload per recipient out to the devices it names,
   * all recipients in one commit. Each recipient's devices must equal its
   * current devices (the sender's own device excluded on its own account):
   * otherwise 410 `stale_devices` or 409 `mismatched_devices` listing every
   * failing recipient in `recipients` (410 wins). An unknown recipient is 404
   * `not_found` (listed in `recipients`) for an authenticated sender, 401 without one.
   * The caller checks access keys and rate limits.
   */
  async sendMultiRecipient(
    sender: DevicePrincipal | null,
    message: ParsedMultiRecipient,
    idempotencyKey?: string,
  ): Promise<MultiRecipientResponse> {
    const { recipients, shared } = message;
    // Sizes are computed, never built: each recipient's message is its header followed by the shared part.
    if (recipients.some((r) => r.header.length + shared.length > limits.maxContentBytes)) {
      throw new HttpError("content_too_large", `Content is limited to ${limits.maxContentBytes} bytes per device`);
    }
    // Every recipient's message has the same frame: one is checked, assembled once.
    checkCiphertext("sealed", assembleForRecipient(recipients[0]!.header, shared));
    const payload = new SharedPayloadRef(randomUUID(), shared);
    const destinations = recipients.map((r) => {
      const content = payload.wireContent(r.header);
      const messages = r.devices.map((d): DecodedMessage => ({
        type: "sealed",
        destinationDeviceId: d.deviceId,
        destinationRegistrationId: d.registrationId,
        content,
        bytes: r.header,
        shared: payload,
      }));
      return { uuid: r.uuid, messages };
    });
    const item: SendItem = { sender, destinations, shape: "multi", idempotencyKey };
    await this.screen(item);
    return this.sends.submit(item);
  }

  /**
   * Checks messages as a send would (no device twice, size, content that
   * parses as its type) without storing them: for sends relayed to another
   * server, so this server never relays anything but libsignal messages.
   * @throws HttpError `invalid_request`, `content_too_large`, `invalid_ciphertext`
   */
  checkMessages(messages: OutgoingMessage[]): void {
    decodeMessages(messages);
  }

  /**
   * A send relayed by another homeserver for one of its users (federation):
   * the same device rules and answers as a local send, envelopes stamped
   * with `origin`. Without `sender` (sealed sender) every message must be
   * sealed and the caller has checked the access key. The send id is the
   * idempotency key, scoped to the origin server: a relayed send repeated
   * (a retried transaction) gets its first answer and stores nothing.
   */
  async receiveRelayed(
    origin: string,
    id: string,
    sender: DevicePrincipal | null,
    destination: string,
    messages: OutgoingMessage[],
  ): Promise<SendMessagesResponse> {
    if (!sender && messages.some((m) => m.type !== "sealed")) {
      throw new HttpError("invalid_request", "A send without a source must be sealed");
    }
    return this.submitSingle(sender, destination, decodeMessages(messages), id, origin);
  }

  private async submitSingle(
    sender: DevicePrincipal | null,
    destination: string,
    messages: DecodedMessage[],
    idempotencyKey?: string,
    origin?: string,
  ): Promise<SendMessagesResponse> {
    const item: SendItem = {
      sender,
      origin,
      destinations: [{ uuid: destination, messages }],
      shape: "single",
      idempotencyKey,
    };
    await this.screen(item);
    const result = await this.sends.submit(item);
    return { serverTimestamp: result.serverTimestamp, envelopes: result.recipients[0]?.envelopes ?? [] };
  }

  /**
   * Asks the plugins about a send before it joins a batch (a slow plugin
   * never holds up a group commit): `beforeEnvelopeAccepted` once per
   * recipient account. The refusals the commit itself would give (unknown
   * account, wrong devices) are checked first, so plugins are asked only
   * about sends that would be stored (a client's retry after a 409 is not
   * counted twice by a quota); the commit checks the devices again.
   * Without a plugin implementing the hook this costs nothing.
   * @throws HttpError 403 `refused_by_plugin`, or the commit's own refusal
   */
  private async screen(item: SendItem): Promise<void> {
    if (!this.plugins.has("beforeEnvelopeAccepted")) return;
    const refusal = refuseSend(item, await this.accounts.devicesOf([...new Set(item.destinations.map((d) => d.uuid))]));
    if (refusal) throw refusal;
    const sender = item.sender
      ? Object.freeze({ accountId: item.sender.accountId, deviceId: item.sender.deviceId })
      : null;
    const kind = item.shape === "multi" ? "multi_recipient" : "single";
    await this.plugins.ask(
      "beforeEnvelopeAccepted",
      item.destinations.map((d) => ({
        sender,
        originServer: item.origin ?? null,
        recipientAccountId: d.uuid,
        deviceCount: d.messages.length,
        bytes: d.messages.reduce((sum, m) => sum + sizeOf(m), 0),
        sealed: d.messages.every((m) => m.type === "sealed"),
        kind,
      })),
    );
  }

  /** The device's oldest queued envelopes after `afterSeq`. */
  async fetch(device: DevicePrincipal, afterSeq = 0, limit: number = limits.maxEnvelopesPerBatch): Promise<Delivery[]> {
    const rows = await this.envelopes.fetch(device.accountId, device.deviceId, afterSeq, limit, Date.now());
    return rows.map((r) => ({ accountId: r.accountId, deviceId: r.deviceId, seq: r.seq, envelope: toWire(r) }));
  }

  /**
   * Deletes acknowledged envelopes. Unknown ids are ignored (already
   * deleted: acks are idempotent), and so are ids queued for another device:
   * they are answered exactly like deleted ones and left alone, so an ack
   * tells nobody whether another device's envelope is still queued.
   * @returns how many of the caller's envelopes were deleted
   */
  async ack(device: DevicePrincipal, ids: string[]): Promise<number> {
    const deleted = await this.acks.submit({ device, ids: [...new Set(ids)] });
    if (deleted > 0 && this.plugins.has("envelopeDelivered")) {
      // Not awaited: an acknowledgement never waits on a plugin (the host logs failures).
      void this.plugins.emit("envelopeDelivered", {
        accountId: device.accountId,
        deviceId: device.deviceId,
        count: deleted,
        time: Date.now(),
      });
    }
    return deleted;
  }

  /** Deletes expired envelopes. */
  async sweepExpired(): Promise<number> {
    const count = await this.envelopes.deleteExpired(Date.now());
    this.metrics?.envelopesExpired.inc(count);
    await this.idempotency?.sweepExpired();
    return count;
  }

  /** How many envelopes wait in every mailbox (for the queue-depth metric). */
  async queueDepth(): Promise<number> {
    return this.envelopes.count();
  }

  /** Resolves when every accepted send and ack has committed. */
  async idle(): Promise<void> {
    await Promise.all([this.sends.idle(), this.acks.idle()]);
  }

  /**
   * One batch of sends: one query for every destination's devices and
   * their mailbox usage (a send over a cap is refused, 507 `mailbox_full`),
   * then one transaction with every accepted envelope, the shared payloads
   * of multi-recipient sends and the usage increments (if it fails, the
   * batcher re-runs each send alone, which re-reads devices and usage).
   * Timestamps are coarse (see {@link coarseTimestamp}).
   */
  private async commitSends(
    items: SendItem[],
    recordsFor?: (items: SendItem[], outcomes: Outcome<MultiRecipientResponse>[]) => PendingStatement[],
  ): Promise<Outcome<MultiRecipientResponse>[]> {
    const acceptedAt = Date.now();
    const now = coarseTimestamp(acceptedAt);
    const committed: { envelope: NewEnvelope; content: string }[] = [];
    const shared = new Map<string, NewSharedPayload>();
    const { devices, usage } = await this.envelopes.recipients([
      ...new Set(items.flatMap((i) => i.destinations.map((d) => d.uuid))),
    ]);
    const budget = new MailboxBudget(this.caps, usage);
    const outcomes = items.map((item): Outcome<MultiRecipientResponse> => {
      const refusal = refuseSend(item, devices);
      if (refusal) return { error: refusal };
      const full = budget.take(
        item.destinations.flatMap((d) =>
          d.messages.map((m) => ({ accountId: d.uuid, deviceId: m.destinationDeviceId, size: sizeOf(m) })),
        ),
      );
      if (full.length) {
        this.metrics?.refused("mailbox_full");
        return { error: mailboxFull(full, item.shape) };
      }
      const response: MultiRecipientResponse = { serverTimestamp: now, recipients: [] };
      for (const destination of item.destinations) {
        const envelopes: { deviceId: number; id: string }[] = [];
        for (const m of destination.messages) {
          // Sealed envelopes are stored without a sender, even when the sender authenticated.
          const source = m.type === "sealed" ? null : item.sender;
          const envelope: NewEnvelope = {
            id: randomUUID(),
            accountId: destination.uuid,
            deviceId: m.destinationDeviceId,
            type: envelopeTypes[m.type],
            sourceAccountId: source?.accountId ?? null,
            sourceDeviceId: source?.deviceId ?? null,
            sourceServer: item.origin ?? null,
            content: m.bytes,
            sharedPayloadId: m.shared?.id ?? null,
            size: sizeOf(m),
            serverTimestamp: now,
            // Coarse like the timestamp (a TTL under the granularity, in tests only, is kept exact).
            expiresAt: coarseExpiry(acceptedAt, this.ttlMs),
          };
          if (m.shared) shared.set(m.shared.id, { id: m.shared.id, content: m.shared.bytes });
          committed.push({ envelope, content: m.content });
          envelopes.push({ deviceId: m.destinationDeviceId, id: envelope.id });
        }
        response.recipients.push({ uuid: destination.uuid, envelopes });
      }
      return { value: response };
    });
    // The idempotency records of the accepted sends commit in the envelopes' transaction.
    await this.envelopes.insertMany(
      committed.map((c) => c.envelope),
      [...shared.values()],
      recordsFor?.(items, outcomes),
    );
    this.metrics?.envelopesAccepted.inc(committed.length);
    if (committed.length) {
      const deliveries = committed.map(({ envelope, content }) => ({
        accountId: envelope.accountId,
        deviceId: envelope.deviceId,
        envelope: toWire({ ...envelope, seq: 0 }, content),
      }));
      for (const listener of this.listeners) listener(deliveries);
    }
    return outcomes;
  }

  /**
   * One batch of acknowledgements: one transaction deletes each device's own
   * acknowledged ids (others' ids are skipped, as if already deleted) and
   * releases what they held.
   */
  private async commitAcks(items: AckItem[]): Promise<Outcome<number>[]> {
    const deleted = await this.envelopes.deleteAcknowledged(
      items.map((i) => ({ accountId: i.device.accountId, deviceId: i.device.deviceId, ids: i.ids })),
    );
    this.metrics?.envelopesDelivered.inc(deleted.length);
    const owner = new Map(deleted.map((d) => [d.id, d]));
    // An id the same device acknowledged twice in one batch counts once.
    const counted = new Set<string>();
    return items.map((item): Outcome<number> => {
      let count = 0;
      for (const id of item.ids) {
        const row = owner.get(id);
        if (row?.accountId !== item.device.accountId || row.deviceId !== item.device.deviceId || counted.has(id))
          continue;
        counted.add(id);
        count++;
      }
      return { value: count };
    });
  }
}

/** Bytes a message takes in its recipient's mailbox, as delivered (a multi-recipient header plus the shared part). */
function sizeOf(m: DecodedMessage): number {
  return m.bytes.length + (m.shared?.bytes.length ?? 0);
}

/**
 * Decodes and checks the messages of one destination: no device twice,
 * content within the per-device limit, content that parses as its type.
 */
function decodeMessages(messages: OutgoingMessage[]): DecodedMessage[] {
  const seen = new Set<number>();
  return messages.map((m, i) => {
    if (seen.has(m.destinationDeviceId)) {
      throw new HttpError("invalid_request", "A destination device appears twice", {
        issues: [{ path: ["messages", i, "destinationDeviceId"], message: "duplicate destination device" }],
      });
    }
    seen.add(m.destinationDeviceId);
    const bytes = fromBase64(m.content);
    if (bytes.length > limits.maxContentBytes) {
      throw new HttpError("content_too_large", `Content is limited to ${limits.maxContentBytes} bytes per device`);
    }
    checkCiphertext(m.type, bytes);
    return { ...m, bytes };
  });
}

/** Why a send cannot be committed against the current devices, or null when it can. */
function refuseSend(item: SendItem, devices: Map<string, DeviceRef[]>): HttpError | null {
  const unknown = item.destinations.filter((d) => !devices.has(d.uuid)).map((d) => d.uuid);
  if (unknown.length) {
    // Without credentials, an unknown account must look like a wrong access key.
    if (!item.sender) return unauthorized();
    if (item.shape === "single") return new HttpError("not_found", "No such account");
    return new HttpError("not_found", "Some recipients have no account here", {
      recipients: unknown.map((uuid) => ({ uuid })),
    });
  }
  const mismatches = item.destinations.map((d) =>
    // A relayed sender is an account on another server: never "oneself".
    compareDevices(item.origin ? null : item.sender, d.uuid, d.messages, devices.get(d.uuid) ?? []),
  );
  const stale = mismatches.filter((m) => m.staleDevices.length);
  if (stale.length) {
    const message = "Some devices were re-registered";
    if (item.shape === "single")
      return new HttpError("stale_devices", message, { staleDevices: stale[0]!.staleDevices });
    return new HttpError("stale_devices", message, {
      recipients: stale.map(({ uuid, staleDevices }) => ({ uuid, staleDevices })),
    });
  }
  const mismatched = mismatches.filter((m) => m.missingDevices.length || m.extraDevices.length);
  if (mismatched.length) {
    const message = "The device list does not match the recipient's devices";
    if (item.shape === "single") {
      const { missingDevices, extraDevices } = mismatched[0]!;
      return new HttpError("mismatched_devices", message, { missingDevices, extraDevices });
    }
    return new HttpError("mismatched_devices", message, {
      recipients: mismatched.map(({ uuid, missingDevices, extraDevices }) => ({ uuid, missingDevices, extraDevices })),
    });
  }
  return null;
}

/**
 * Compares the devices a send names with the destination's current devices
 * (minus the sender's own device on a send to its own account). A device
 * with a wrong registration id is stale; the lists are sorted.
 */
function compareDevices(
  sender: DevicePrincipal | null,
  destination: string,
  messages: DecodedMessage[],
  current: DeviceRef[],
): Required<RecipientMismatch> {
  const isSelf = sender !== null && destination === sender.accountId;
  const expected = new Map(
    current.filter((d) => !(isSelf && d.id === sender.deviceId)).map((d) => [d.id, d.registrationId]),
  );
  const given = new Set(messages.map((m) => m.destinationDeviceId));
  const byNumber = (a: number, b: number): number => a - b;
  return {
    uuid: destination,
    staleDevices: messages
      .filter(
        (m) =>
          expected.has(m.destinationDeviceId) && expected.get(m.destinationDeviceId) !== m.destinationRegistrationId,
      )
      .map((m) => m.destinationDeviceId)
      .sort(byNumber),
    missingDevices: [...expected.keys()].filter((id) => !given.has(id)).sort(byNumber),
    extraDevices: [...given].filter((id) => !expected.has(id)).sort(byNumber),
  };
}
