import { randomUUID } from "node:crypto";
import {
  envelopeTypeName,
  envelopeTypes,
  limits,
  type Envelope,
  type OutgoingMessage,
  type SendMessagesResponse,
} from "@zimchat/protocol";
import type { Bytes } from "../db/database.js";
import { HttpError } from "../errors.js";
import type { AccountStore, DeviceRef } from "../stores/account-store.js";
import type { EnvelopeStore, NewEnvelope, StoredEnvelope } from "../stores/envelope-store.js";
import { Batcher, type Outcome } from "../util/batcher.js";
import type { DevicePrincipal } from "./account-service.js";
import type { RateLimiter } from "./rate-limiter.js";
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

interface SendItem {
  sender: DevicePrincipal;
  destination: string;
  messages: (OutgoingMessage & { bytes: Bytes })[];
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
  return envelope;
}

/**
 * Per-device mailboxes. Sends and acknowledgements go through group commit:
 * concurrent requests share one transaction, and each request is answered
 * only after the transaction that holds its envelopes has committed.
 */
export class MailboxService {
  private readonly listeners = new Set<DeliveryListener>();
  private readonly sends: Batcher<SendItem, SendMessagesResponse>;
  private readonly acks: Batcher<AckItem, number>;

  constructor(
    private readonly envelopes: EnvelopeStore,
    private readonly accounts: AccountStore,
    private readonly limiter: RateLimiter,
    private readonly ttlMs: number,
  ) {
    this.sends = new Batcher((items) => this.commitSends(items));
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
  async send(sender: DevicePrincipal, destination: string, messages: OutgoingMessage[]): Promise<SendMessagesResponse> {
    await this.limiter.consume("send", `${sender.accountId}.${sender.deviceId}`);
    const seen = new Set<number>();
    const decoded = messages.map((m, i) => {
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
    return this.sends.submit({ sender, destination, messages: decoded });
  }

  /** The device's oldest queued envelopes after `afterSeq`. */
  async fetch(device: DevicePrincipal, afterSeq = 0, limit: number = limits.maxEnvelopesPerBatch): Promise<Delivery[]> {
    const rows = await this.envelopes.fetch(device.accountId, device.deviceId, afterSeq, limit, Date.now());
    return rows.map((r) => ({ accountId: r.accountId, deviceId: r.deviceId, seq: r.seq, envelope: toWire(r) }));
  }

  /**
   * Deletes acknowledged envelopes. Unknown ids are ignored (already
   * deleted: acks are idempotent); an id queued for another device refuses
   * the whole acknowledgement with 403 `envelope_not_owned` and deletes nothing.
   * @returns how many envelopes were deleted
   */
  async ack(device: DevicePrincipal, ids: string[]): Promise<number> {
    return this.acks.submit({ device, ids: [...new Set(ids)] });
  }

  /** Deletes expired envelopes. */
  async sweepExpired(): Promise<number> {
    return this.envelopes.deleteExpired(Date.now());
  }

  /** Resolves when every accepted send and ack has committed. */
  async idle(): Promise<void> {
    await Promise.all([this.sends.idle(), this.acks.idle()]);
  }

  /**
   * One batch of sends: one query for every destination's devices, one
   * multi-row INSERT for every accepted envelope (atomic by itself; if it
   * fails, the batcher re-runs each send alone, which re-reads the devices).
   */
  private async commitSends(items: SendItem[]): Promise<Outcome<SendMessagesResponse>[]> {
    const now = Date.now();
    const committed: { envelope: NewEnvelope; content: string }[] = [];
    const devices = await this.accounts.devicesOf([...new Set(items.map((i) => i.destination))]);
    const outcomes = items.map((item): Outcome<SendMessagesResponse> => {
      const current = devices.get(item.destination);
      if (!current) return { error: new HttpError("not_found", "No such account") };
      const mismatch = checkDevices(item, current);
      if (mismatch) return { error: mismatch };
      const response: SendMessagesResponse = { serverTimestamp: now, envelopes: [] };
      for (const m of item.messages) {
        const envelope: NewEnvelope = {
          id: randomUUID(),
          accountId: item.destination,
          deviceId: m.destinationDeviceId,
          type: envelopeTypes[m.type],
          sourceAccountId: item.sender.accountId,
          sourceDeviceId: item.sender.deviceId,
          content: m.bytes,
          serverTimestamp: now,
          expiresAt: now + this.ttlMs,
        };
        committed.push({ envelope, content: m.content });
        response.envelopes.push({ deviceId: m.destinationDeviceId, id: envelope.id });
      }
      return { value: response };
    });
    await this.envelopes.insertMany(committed.map((c) => c.envelope));
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
   * One batch of acknowledgements: one query for the owners of every id, one
   * DELETE for the ids their devices own. Envelopes never change owner, so
   * the two need no transaction around them.
   */
  private async commitAcks(items: AckItem[]): Promise<Outcome<number>[]> {
    const owners = new Map((await this.envelopes.owners([...new Set(items.flatMap((i) => i.ids))])).map((o) => [o.id, o]));
    const deletable: string[] = [];
    const results = items.map((item): Outcome<number> => {
      const found = item.ids.flatMap((id) => owners.get(id) ?? []);
      if (found.some((o) => o.accountId !== item.device.accountId || o.deviceId !== item.device.deviceId)) {
        return { error: new HttpError("envelope_not_owned", "An acknowledged envelope is not queued for this device") };
      }
      deletable.push(...found.map((o) => o.id));
      return { value: found.length };
    });
    await this.envelopes.deleteIds([...new Set(deletable)]);
    return results;
  }
}

function checkDevices(item: SendItem, current: DeviceRef[]): HttpError | null {
  const isSelf = item.destination === item.sender.accountId;
  const expected = new Map(current.filter((d) => !(isSelf && d.id === item.sender.deviceId)).map((d) => [d.id, d.registrationId]));
  const given = new Set(item.messages.map((m) => m.destinationDeviceId));
  const stale = item.messages
    .filter((m) => expected.has(m.destinationDeviceId) && expected.get(m.destinationDeviceId) !== m.destinationRegistrationId)
    .map((m) => m.destinationDeviceId);
  if (stale.length) return new HttpError("stale_devices", "Some devices were re-registered", { staleDevices: stale.sort((a, b) => a - b) });
  const missing = [...expected.keys()].filter((id) => !given.has(id));
  const extra = [...given].filter((id) => !expected.has(id));
  if (missing.length || extra.length) {
    return new HttpError("mismatched_devices", "The device list does not match the recipient's devices", {
      missingDevices: missing.sort((a, b) => a - b),
      extraDevices: extra.sort((a, b) => a - b),
    });
  }
  return null;
}
