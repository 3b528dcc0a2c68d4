import { createHash } from "node:crypto";
import type { MultiRecipientResponse } from "@zimchat/protocol";
import { HttpError } from "../errors.js";
import type { Metrics } from "../metrics/metrics.js";
import type { IdempotencyRecord, IdempotencyStore, PendingStatement } from "../stores/idempotency-store.js";
import type { Outcome } from "../util/batcher.js";
import { coarseExpiry } from "../util/day.js";

/** What idempotency needs to know of a send (the mailbox's batch item). */
export interface IdempotentSend {
  idempotencyKey?: string | undefined;
  /** The authenticated sending device, or null without credentials (sealed sender). */
  sender: { accountId: string; deviceId: number } | null;
  /** Federation: the server that relayed the send; its send ids are keys scoped to that server. */
  origin?: string | undefined;
  destinations: { uuid: string }[];
  shape: "single" | "multi";
}

/**
 * Commits a batch of sends that need no replay; `recordsFor` gives the
 * statements that remember the accepted ones, for the envelopes' transaction.
 */
export type CommitSends<T> = (
  items: T[],
  recordsFor: (items: T[], outcomes: Outcome<MultiRecipientResponse>[]) => PendingStatement[],
) => Promise<Outcome<MultiRecipientResponse>[]>;

/** The stored answer: no account ids, the envelopes per destination in sorted-uuid order. */
interface StoredAnswer {
  t: number;
  d: [deviceId: number, id: string][][];
}

/**
 * Idempotent sends. A send with a key is looked up before it is committed:
 * a key already committed in its scope answers with the first answer (same
 * destinations) or 422 `idempotency_conflict` (other destinations), and
 * stores nothing; a new key is written in the envelopes' own transaction.
 *
 * Scope: an authenticated send's key belongs to its sending device; a send
 * without credentials has no sender to scope by, so its key belongs to its
 * destination set. Either way the stored hash mixes in the scope, so one
 * client's keys never meet another's. Only hashes are stored, and the
 * fingerprint of the destinations is keyed by the client's key: a seized
 * database cannot be tested for "who sent to whom" without the key.
 */
export class SendIdempotency {
  constructor(
    private readonly store: IdempotencyStore,
    private readonly ttlMs: number,
    private readonly metrics?: Metrics,
  ) {}

  /** Runs one batch: replays and conflicts are answered here, the rest go to `commit` (and are remembered there). */
  async run<T extends IdempotentSend>(items: T[], commit: CommitSends<T>): Promise<Outcome<MultiRecipientResponse>[]> {
    const ids = items.map(identify);
    const now = Date.now();
    const stored = new Map(
      (await this.store.find([...new Set(ids.flatMap((id) => (id ? [id.keyHash] : [])))], now)).map((r) => [
        r.keyHash,
        r,
      ]),
    );
    const outcomes: (Outcome<MultiRecipientResponse> | undefined)[] = items.map((item, i) => {
      const id = ids[i];
      const record = id && stored.get(id.keyHash);
      return record ? this.replay(item, id, record) : undefined;
    });
    // The first send of each new key in this batch is committed; a second one with the same key waits for its answer.
    const firstOf = new Map<string, number>();
    const fresh: number[] = [];
    items.forEach((_, i) => {
      const id = ids[i];
      if (outcomes[i]) return;
      if (id && firstOf.has(id.keyHash)) return;
      if (id) firstOf.set(id.keyHash, i);
      fresh.push(i);
    });
    const recordsFor = (committed: T[], results: Outcome<MultiRecipientResponse>[]): PendingStatement[] => {
      const records = committed.flatMap((item, j): IdempotencyRecord[] => {
        const id = identify(item);
        const result = results[j];
        if (!id || !result || !("value" in result)) return [];
        return [
          {
            keyHash: id.keyHash,
            fingerprint: id.fingerprint,
            answer: JSON.stringify(toStored(result.value)),
            expiresAt: coarseExpiry(now, this.ttlMs),
          },
        ];
      });
      return this.store.insertStatements(records, now);
    };
    const committed = fresh.length
      ? await commit(
          fresh.map((i) => items[i]!),
          recordsFor,
        )
      : [];
    fresh.forEach((i, j) => (outcomes[i] = committed[j] ?? { error: new Error("batch returned no outcome") }));
    return items.map((item, i) => {
      const done = outcomes[i];
      if (done) return done;
      // A repeat of a key first seen in this batch: answered like a retry arriving just after it.
      const id = ids[i]!;
      const first = outcomes[firstOf.get(id.keyHash)!]!;
      if (!("value" in first)) return first;
      return this.replay(item, id, {
        keyHash: id.keyHash,
        fingerprint: ids[firstOf.get(id.keyHash)!]!.fingerprint,
        answer: JSON.stringify(toStored(first.value)),
        expiresAt: 0,
      });
    });
  }

  /** Deletes expired records (run with the envelope sweep). */
  async sweepExpired(): Promise<number> {
    return this.store.deleteExpired(Date.now());
  }

  private replay(item: IdempotentSend, id: SendIdentity, record: IdempotencyRecord): Outcome<MultiRecipientResponse> {
    if (record.fingerprint !== id.fingerprint) {
      this.metrics?.refused("idempotency_conflict");
      return {
        error: new HttpError("idempotency_conflict", "This idempotency key was used for a send to other recipients"),
      };
    }
    this.metrics?.sendsReplayed.inc();
    return { value: fromStored(JSON.parse(record.answer) as StoredAnswer, item) };
  }
}

interface SendIdentity {
  keyHash: string;
  fingerprint: string;
}

/** The key's hash within its scope and the fingerprint of the destinations, or null for a send without a key. */
function identify(item: IdempotentSend): SendIdentity | null {
  const key = item.idempotencyKey;
  if (key === undefined) return null;
  const uuids = sortedUuids(item);
  // Relayed: the origin server. Authenticated: the sending device. Sealed: the destinations (no sender to scope by).
  const scope = item.origin
    ? `server\0${item.origin}`
    : item.sender
      ? `device\0${item.sender.accountId}.${item.sender.deviceId}`
      : `sealed\0${item.shape}\0${uuids.join(",")}`;
  return {
    keyHash: hash(`zimchat-send-key-v1\0${scope}\0${key}`),
    fingerprint: hash(`zimchat-send-fingerprint-v1\0${key}\0${item.shape}\0${uuids.join(",")}`).slice(0, 22),
  };
}

function sortedUuids(item: IdempotentSend): string[] {
  return item.destinations.map((d) => d.uuid).sort();
}

function hash(text: string): string {
  return createHash("sha256").update(text).digest("base64url");
}

function toStored(response: MultiRecipientResponse): StoredAnswer {
  const byUuid = new Map(response.recipients.map((r) => [r.uuid, r.envelopes]));
  return {
    t: response.serverTimestamp,
    d: [...byUuid.keys()]
      .sort()
      .map((uuid) => (byUuid.get(uuid) ?? []).map((e): [number, string] => [e.deviceId, e.id])),
  };
}

/** Rebuilds the first answer in the retry's order (its destinations are the same set: the fingerprints matched). */
function fromStored(answer: StoredAnswer, item: IdempotentSend): MultiRecipientResponse {
  const position = new Map(sortedUuids(item).map((uuid, i) => [uuid, i]));
  return {
    serverTimestamp: answer.t,
    recipients: item.destinations.map(({ uuid }) => ({
      uuid,
      envelopes: (answer.d[position.get(uuid) ?? -1] ?? []).map(([deviceId, id]) => ({ deviceId, id })),
    })),
  };
}
