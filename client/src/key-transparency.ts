/**
 * Key transparency on the client: checks that every identity key the
 * homeserver hands out is in the server's key-transparency log (an
 * inclusion proof against a tree head signed by the log's key), and that
 * every tree head this device sees extends the last one it stored (a
 * consistency proof). The log is the `key-transparency` server plugin; its
 * wire format and the Merkle math are in `@zimchat/protocol`, the signature
 * check is libsignal's `PublicKey.verify`.
 *
 * A failure is reported, never thrown: the caller decides what to do
 * (ZimClient emits `keyTransparencyFailure` and goes on, see there).
 */
import { publicKeyFromBytes, verifySignature, type PublicKey } from "./signal/keys.js";
import {
  keyLogConsistencyResponseSchema,
  keyLogHeadResponseSchema,
  keyLogInclusionResponseSchema,
  leafBytes,
  leafHash,
  signedTreeHeadSchema,
  treeHeadPayload,
  verifyConsistency,
  verifyInclusion,
  type SignedTreeHead,
} from "@zimchat/protocol";
import type { z } from "zod";
import type { DeviceCredentials } from "./http-api.js";
import type { DeviceStore } from "./store/device-store.js";

/** Where the homeserver mounts the log's routes. */
export const keyTransparencyPath = "/plugins/key-transparency";

/** Why a key-transparency check failed (the `keyTransparencyFailure` event). */
export type KeyTransparencyFailureReason =
  /** The log does not hold this (account, identity key), or its inclusion proof does not verify. */
  | "not_included"
  /** A tree head does not extend the last one this device stored: the log was rewritten (or forked). */
  | "inconsistent"
  /** A tree head is not signed by the log key this device pinned. */
  | "bad_signature"
  /** The server presents a different log key than the pinned (or configured) one. */
  | "log_key_changed"
  /** The log did not answer (or answered garbage) although this device has seen it, or was told to expect it. */
  | "unavailable";

/** A failed check: which account and key, why, and a human-readable detail (no secrets). */
export interface KeyTransparencyFailure {
  accountId: string;
  /** The identity key that was checked (serialized libsignal PublicKey, base64). */
  identityKey?: string;
  reason: KeyTransparencyFailureReason;
  detail: string;
}

/** The `keyTransparency` option of a ZimClient. */
export interface KeyTransparencyOptions {
  /**
   * The log's public key (base64 serialized libsignal PublicKey), published
   * by the admin out of band. Given: the log is required and must be signed
   * by this key. Absent: the key is pinned on first use, like the
   * sealed-sender trust root, and the log is checked only once the server
   * has offered it.
   */
  publicKey?: string;
}

/** Bytes of one answer from the log (its largest, an inclusion answer, is under 4 KB). */
const maxResponseBytes = 64 * 1024;
/** How long one request to the log may take. */
const requestTimeoutMs = 10_000;
/** After the server said it has no log, ask again after this long. */
const absentRecheckMs = 5 * 60_000;
/** A key that failed is checked again in the background (on its next message) only after this long. */
const failureRecheckMs = 10 * 60_000;

/** The device-store settings this module keeps. */
const settings = {
  logKey: "keyTransparency:logKey",
  head: "keyTransparency:head",
  checked: (accountId: string) => `keyTransparency:checked:${accountId}`,
} as const;

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const unb64 = (s: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;

class Failure extends Error {
  constructor(
    readonly reason: KeyTransparencyFailureReason,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/**
 * Checks identity keys against one homeserver's key-transparency log.
 * Checks run one at a time (so tree heads advance in order). Verified
 * (account, key) pairs are remembered, in memory and in the device store,
 * so a key is checked once, not per message.
 *
 * State is written through `save`, which the caller runs in its own store
 * transaction queue; this class keeps its own copy, so it never reads back
 * a write that has not landed yet.
 */
export class KeyTransparencyChecker {
  private pinned: string | null;
  private head: SignedTreeHead | null;
  private readonly checked = new Map<string, string>();
  /** `accountId key` -> when its last check failed. */
  private readonly failedAt = new Map<string, number>();
  /** `accountId key` pairs being checked now. */
  private readonly inFlight = new Set<string>();
  private absentUntil = 0;
  private tail: Promise<unknown> = Promise.resolve();

  /**
   * @param credentials this device's credentials (inclusion proofs take them, like key bundles)
   * @param save writes a device-store setting (the caller queues it in its own transaction)
   */
  constructor(
    private readonly serverUrl: string,
    private readonly credentials: () => DeviceCredentials,
    private readonly store: DeviceStore,
    private readonly save: (key: string, value: string) => void,
    private readonly options: KeyTransparencyOptions = {},
  ) {
    this.pinned = options.publicKey ?? store.getValue(settings.logKey) ?? null;
    const stored = store.getValue(settings.head);
    const head = stored ? signedTreeHeadSchema.safeParse(safeJson(stored)) : null;
    this.head = head?.success ? head.data : null;
  }

  /** Whether this (account, key) pair has been verified before. */
  isChecked(accountId: string, identityKey: Uint8Array): boolean {
    const key = b64(identityKey);
    if (this.checked.get(accountId) === key) return true;
    if (this.store.getValue(settings.checked(accountId)) === key) {
      this.checked.set(accountId, key);
      return true;
    }
    return false;
  }

  /**
   * Whether a background check of this pair is due: not verified yet, and
   * not failed within the last ten minutes (so a contact whose key fails is
   * not re-checked, and reported, on every message).
   */
  isDue(accountId: string, identityKey: Uint8Array): boolean {
    // The server has no log (and none is expected): nothing to do until it is asked again.
    if (!this.pinned && Date.now() < this.absentUntil) return false;
    if (this.isChecked(accountId, identityKey) || this.inFlight.has(`${accountId} ${b64(identityKey)}`)) return false;
    const failed = this.failedAt.get(`${accountId} ${b64(identityKey)}`);
    return failed === undefined || Date.now() - failed >= failureRecheckMs;
  }

  /**
   * Checks that `identityKey` is in the log for `accountId`, under a head
   * signed by the log key and consistent with the last head this device
   * stored. Skipped (null) when the pair was verified before, or when the
   * server offers no log and none was pinned or configured.
   * @returns null when fine, else the failure
   */
  check(accountId: string, identityKey: Uint8Array): Promise<KeyTransparencyFailure | null> {
    if (this.isChecked(accountId, identityKey)) return Promise.resolve(null);
    const key = b64(identityKey);
    const pair = `${accountId} ${key}`;
    this.inFlight.add(pair);
    const run = this.tail.then(async () => {
      const failure = await this.checkNow(accountId, key);
      if (failure) this.failedAt.set(pair, Date.now());
      else this.failedAt.delete(pair);
      return failure;
    });
    void run.finally(() => this.inFlight.delete(pair)).catch(() => undefined);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async checkNow(accountId: string, identityKey: string): Promise<KeyTransparencyFailure | null> {
    if (this.checked.get(accountId) === identityKey) return null;
    try {
      const logKey = await this.logKey();
      if (!logKey) return null;
      const found = await this.get(
        `/v1/inclusion?accountId=${encodeURIComponent(accountId)}&identityKey=${encodeURIComponent(identityKey)}`,
        keyLogInclusionResponseSchema,
      );
      if (found === "not_found")
        throw new Failure("not_included", "the log holds no entry for this account and identity key");
      if (found.leaf.accountId !== accountId || found.leaf.identityKey !== identityKey)
        throw new Failure("not_included", "the log answered with another entry");
      await this.acceptHead(found.head, logKey);
      const included = verifyInclusion(
        leafHash(leafBytes(found.leaf)),
        found.leafIndex,
        found.head.treeSize,
        found.proof.hashes.map(unb64),
        unb64(found.head.rootHash),
      );
      if (!included)
        throw new Failure(
          "not_included",
          `the inclusion proof of entry ${found.leafIndex} does not verify against the signed head of size ${found.head.treeSize}`,
        );
      this.checked.set(accountId, identityKey);
      this.save(settings.checked(accountId), identityKey);
      return null;
    } catch (error) {
      if (error instanceof Failure) return { accountId, identityKey, reason: error.reason, detail: error.detail };
      return {
        accountId,
        identityKey,
        reason: "unavailable",
        detail: `key-transparency check failed: ${(error as Error)?.message ?? String(error)}`,
      };
    }
  }

  /**
   * The log key to verify heads with, after checking the server's head
   * against it (pinning it on first use). Null when the server offers no
   * log and this device expects none.
   */
  private async logKey(): Promise<PublicKey | null> {
    if (this.pinned && this.verifiedKey) return this.verifiedKey;
    if (!this.pinned && Date.now() < this.absentUntil) return null;
    let answer: z.infer<typeof keyLogHeadResponseSchema> | "not_found";
    try {
      answer = await this.get("/v1/head", keyLogHeadResponseSchema);
    } catch (error) {
      // A device that never saw a log cannot tell a broken log from none at all.
      if (!this.pinned) return this.markAbsent();
      throw error;
    }
    if (answer === "not_found") {
      if (!this.pinned) return this.markAbsent();
      throw new Failure("unavailable", "the server no longer offers its key-transparency log");
    }
    if (this.pinned && answer.publicKey !== this.pinned) {
      throw new Failure(
        "log_key_changed",
        this.options.publicKey
          ? "the log is signed by another key than the configured one"
          : "the log key changed since this device pinned it",
      );
    }
    let key: PublicKey;
    try {
      key = publicKeyFromBytes(unb64(answer.publicKey));
    } catch {
      throw new Failure("unavailable", "the log's public key is not a libsignal public key");
    }
    await this.acceptHead(answer.head, key);
    if (!this.pinned) {
      this.pinned = answer.publicKey;
      this.save(settings.logKey, answer.publicKey);
    }
    this.verifiedKey = key;
    return key;
  }

  private verifiedKey: PublicKey | null = null;

  private markAbsent(): null {
    this.absentUntil = Date.now() + absentRecheckMs;
    return null;
  }

  /**
   * Verifies a head's signature and its consistency with the stored head;
   * stores it when it is the larger.
   * @throws Failure bad_signature, log_key_changed, inconsistent or unavailable
   */
  private async acceptHead(head: SignedTreeHead, key: PublicKey): Promise<void> {
    if (!verifySignature(key, treeHeadPayload(head), unb64(head.signature))) {
      // Tell a replaced log key from a forged head.
      const current = await this.get("/v1/head", keyLogHeadResponseSchema).catch(() => null);
      if (current && current !== "not_found" && current.publicKey !== this.pinned)
        throw new Failure("log_key_changed", "the log's heads are signed by a key this device did not pin");
      throw new Failure("bad_signature", `the tree head of size ${head.treeSize} is not signed by the log key`);
    }
    const last = this.head;
    if (!last) return this.storeHead(head);
    if (head.treeSize === last.treeSize) {
      if (head.rootHash !== last.rootHash)
        throw new Failure("inconsistent", `two signed heads of size ${head.treeSize} with different roots`);
      return;
    }
    const [older, newer] = head.treeSize < last.treeSize ? [head, last] : [last, head];
    const answer = await this.get(
      `/v1/consistency?from=${older.treeSize}&to=${newer.treeSize}`,
      keyLogConsistencyResponseSchema,
    );
    if (answer === "not_found" || answer.proof.fromSize !== older.treeSize || answer.proof.toSize !== newer.treeSize) {
      throw new Failure("unavailable", `no consistency proof from ${older.treeSize} to ${newer.treeSize}`);
    }
    if (
      !verifyConsistency(
        older.treeSize,
        newer.treeSize,
        answer.proof.hashes.map(unb64),
        unb64(older.rootHash),
        unb64(newer.rootHash),
      )
    ) {
      throw new Failure(
        "inconsistent",
        `the log of size ${newer.treeSize} does not extend the one of size ${older.treeSize} this device saw: its history was rewritten`,
      );
    }
    // An older head that is a prefix of the stored one is fine (a lagging answer); the stored head stays.
    if (newer === head) this.storeHead(head);
  }

  private storeHead(head: SignedTreeHead): void {
    this.head = head;
    this.save(settings.head, JSON.stringify(head));
  }

  /**
   * GETs a route of the log and parses its answer with `schema`, reading at
   * most {@link maxResponseBytes}.
   * @returns the answer, or "not_found" for a 404
   * @throws Failure unavailable for anything else that is not a 2xx with a valid body
   */
  private async get<S extends z.ZodType>(path: string, schema: S): Promise<z.output<S> | "not_found"> {
    let response: Response;
    try {
      const { uuid, deviceId, password } = this.credentials();
      const authorization = `Basic ${Buffer.from(`${uuid}.${deviceId}:${password}`).toString("base64")}`;
      response = await fetch(new URL(`${keyTransparencyPath}${path}`, this.serverUrl), {
        headers: { accept: "application/json", authorization },
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
    } catch (error) {
      throw new Failure("unavailable", `the log did not answer: ${(error as Error)?.message ?? String(error)}`);
    }
    const declared = Number(response.headers.get("content-length") ?? 0);
    if (declared > maxResponseBytes) {
      await response.body?.cancel();
      throw new Failure("unavailable", `the log's answer is too large (${declared} bytes)`);
    }
    const text = await readLimited(response);
    if (response.status === 404) return "not_found";
    if (!response.ok) throw new Failure("unavailable", `the log answered HTTP ${response.status}`);
    const parsed = schema.safeParse(safeJson(text));
    if (!parsed.success)
      throw new Failure("unavailable", `the log's answer to ${path.split("?")[0]} does not match the protocol`);
    return parsed.data;
  }
}

/** Reads a body up to {@link maxResponseBytes}, cancelling the rest. */
async function readLimited(response: Response): Promise<string> {
  if (!response.body) return "";
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > maxResponseBytes) {
      await response.body.cancel().catch(() => undefined);
      throw new Failure("unavailable", "the log's answer is too large");
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
