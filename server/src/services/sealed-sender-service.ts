import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import {
  accessKeySchema,
  limits,
  uuidSchema,
  type AccountAttributesRequest,
  type MultiRecipientRequest,
  type MultiRecipientResponse,
  type OutgoingMessage,
  type SendMessagesResponse,
} from "@zimchat/protocol";
import type { Bytes } from "../db/database.js";
import { HttpError } from "../errors.js";
import type { AccountStore } from "../stores/account-store.js";
import { unauthorized, type DevicePrincipal } from "./account-service.js";
import type { MailboxService } from "./mailbox-service.js";
import { assembleForRecipient, parseMultiRecipient } from "./multi-recipient-message.js";
import { coarseTimestamp } from "../util/day.js";
import type { RateLimiter } from "./rate-limiter.js";
import { fromBase64 } from "./signal-keys.js";

/** A recipient and the access key the sender presents for it (absent: none given). */
interface AccessClaim {
  uuid: string;
  accessKey: string | undefined;
}

/** A recipient of a multi-recipient send whose account is on another server, with its own sealed message. */
export interface RemoteGroupRecipient {
  uuid: string;
  server: string;
  accessKey: string | undefined;
  /** One sealed message per device of the recipient (the same bytes: its header and the shared part). */
  messages: OutgoingMessage[];
}

/** The results of relaying a multi-recipient send's remote recipients (federation). */
export type RemoteGroupResults = NonNullable<MultiRecipientResponse["remote"]>;

/** Relays the remote recipients of a multi-recipient send to their servers (the federation service). */
export type GroupRelay = (
  sender: DevicePrincipal | null,
  recipients: RemoteGroupRecipient[],
  source: string,
  idempotencyKey: string | undefined,
) => Promise<RemoteGroupResults>;

/** Compared against when an account is unknown or has no key, so every refusal costs the same. */
const dummyHash = randomBytes(32);
const noKey = new Uint8Array(limits.accessKeyBytes);

/** SHA-256 of an access key: what the server stores and compares. */
export function accessKeyHash(accessKey: Uint8Array): Bytes {
  return new Uint8Array(createHash("sha256").update(accessKey).digest()) as Bytes;
}

/**
 * Sealed sender on the server: accounts' unidentified access keys, sends
 * without credentials (checked against the recipient's key), and
 * multi-recipient fan-out. The server stores sealed envelopes without a
 * sender and never logs who sent what to whom.
 */
export class SealedSenderService {
  constructor(
    private readonly accounts: AccountStore,
    private readonly mailbox: MailboxService,
    private readonly limiter: RateLimiter,
  ) {}

  /** Stores the hash of the account's access key and its unrestricted-access flag. */
  async setAttributes(principal: DevicePrincipal, request: AccountAttributesRequest): Promise<void> {
    await this.accounts.setUnidentifiedAccess(
      principal.accountId,
      accessKeyHash(fromBase64(request.accessKey)),
      request.unrestrictedAccess,
    );
  }

  /**
   * Whether a send without credentials to `destination` with this access key
   * would be allowed: the same check as {@link send}, without sending, so a
   * refused sender is refused before its body is read.
   * @throws HttpError `unauthorized`
   */
  async authorize(destination: string, accessKey: string | undefined): Promise<void> {
    await this.checkAccess([{ uuid: destination, accessKey }]);
  }

  /**
   * A send without credentials. The access key must match the recipient's
   * (unless it accepts sealed messages from anyone); a wrong or missing key
   * and an unknown recipient are the same 401. Rate limited per recipient
   * and source address (see {@link sealedSendKey}).
   */
  async send(
    destination: string,
    messages: OutgoingMessage[],
    accessKey: string | undefined,
    source: string,
    idempotencyKey?: string,
  ): Promise<SendMessagesResponse> {
    await this.checkAccess([{ uuid: destination, accessKey }]);
    await this.limiter.consume("sealedSend", sealedSendKey(destination, source));
    return this.mailbox.sendSealed(destination, messages, idempotencyKey);
  }

  /**
   * A multi-recipient send (libsignal `SealedSenderMultiRecipientMessage`):
   * one sealed envelope per device it names, all in one commit. Without
   * credentials, every recipient needs its access key in `accessKeys`
   * (unless unrestricted) and is rate limited like a single sealed send.
   * Access keys and the recipient count are decided from libsignal's parse
   * of the recipient list alone: nothing is built per recipient before they
   * pass, and the shared part is never copied per recipient.
   * @throws HttpError `invalid_ciphertext` for bytes libsignal cannot parse
   */
  async sendMultiRecipient(
    principal: DevicePrincipal | undefined,
    request: MultiRecipientRequest,
    source = "",
    relay?: GroupRelay,
  ): Promise<MultiRecipientResponse> {
    const parsed = parseMultiRecipient(fromBase64(request.message));
    // Federation: recipients on other servers are relayed one by one; the rest are committed here together.
    const serverOf = new Map((request.remoteRecipients ?? []).map((r) => [r.uuid, r.server]));
    const message = serverOf.size
      ? { ...parsed, recipients: parsed.recipients.filter((r) => !serverOf.has(r.uuid)) }
      : parsed;
    const away = serverOf.size ? parsed.recipients.filter((r) => serverOf.has(r.uuid)) : [];
    if (away.length && !relay) throw new HttpError("invalid_request", "Federation is off on this server");
    const { recipients } = message;
    const remote = async (response: MultiRecipientResponse): Promise<MultiRecipientResponse> => {
      if (!away.length || !relay) return response;
      const keys = new Map((request.accessKeys ?? []).map((k) => [k.uuid, k.accessKey]));
      const relayed = await relay(
        principal ?? null,
        away.map((r) => {
          const content = Buffer.from(assembleForRecipient(r.header, parsed.shared)).toString("base64");
          return {
            uuid: r.uuid,
            server: serverOf.get(r.uuid)!,
            accessKey: keys.get(r.uuid),
            messages: r.devices.map((d) => ({
              type: "sealed" as const,
              destinationDeviceId: d.deviceId,
              destinationRegistrationId: d.registrationId,
              content,
            })),
          };
        }),
        source,
        request.idempotencyKey,
      );
      return { ...response, remote: relayed };
    };
    const commitLocal = (sender: DevicePrincipal | null): Promise<MultiRecipientResponse> =>
      recipients.length
        ? this.mailbox.sendMultiRecipient(sender, message, request.idempotencyKey)
        : Promise.resolve({ serverTimestamp: coarseTimestamp(Date.now()), recipients: [] });
    if (principal) {
      await this.limiter.consume("send", `${principal.accountId}.${principal.deviceId}`);
      return remote(await commitLocal(principal));
    }
    const keys = new Map<string, string>();
    for (const [i, { uuid, accessKey }] of (request.accessKeys ?? []).entries()) {
      if (keys.has(uuid)) {
        throw new HttpError("invalid_request", "A recipient's access key appears twice", {
          issues: [{ path: ["accessKeys", i, "uuid"], message: "duplicate recipient" }],
        });
      }
      keys.set(uuid, accessKey);
    }
    if (recipients.length) {
      await this.checkAccess(recipients.map((r) => ({ uuid: r.uuid, accessKey: keys.get(r.uuid) })));
    }
    for (const r of recipients) await this.limiter.consume("sealedSend", sealedSendKey(r.uuid, source));
    return remote(await commitLocal(null));
  }

  /**
   * Checks each claim against the recipient's stored key hash with
   * `timingSafeEqual`. Every claim is checked (no early exit), and an
   * unknown account or one without a key is compared against a dummy hash,
   * so the time does not tell which recipient failed or whether it exists.
   * @throws HttpError `unauthorized`, the same for every failure
   */
  private async checkAccess(claims: AccessClaim[]): Promise<void> {
    const access = await this.accounts.unidentifiedAccessOf([
      ...new Set(claims.map((c) => c.uuid).filter((u) => uuidSchema.safeParse(u).success)),
    ]);
    let allowed = true;
    for (const claim of claims) {
      const stored = access.get(claim.uuid);
      const parsed = claim.accessKey === undefined ? undefined : accessKeySchema.safeParse(claim.accessKey);
      const given = parsed?.success ? fromBase64(parsed.data) : null;
      const expected = stored?.accessKeyHash?.length === dummyHash.length ? stored.accessKeyHash : dummyHash;
      const matches = timingSafeEqual(accessKeyHash(given ?? noKey), expected);
      const ok =
        stored !== undefined &&
        (stored.unrestrictedAccess || (given !== null && stored.accessKeyHash !== null && matches));
      allowed &&= ok;
    }
    if (!allowed) throw unauthorized();
  }
}

/**
 * The key of the sealed-send rate limit: the recipient AND the sender's
 * address (the REST peer, or the `/sealed` socket's handshake peer; the
 * forwarded address behind a trusted proxy). With one bucket per recipient,
 * one sender holding the access key could use it up and every other sealed
 * sender to that recipient got 429; now each source address has its own
 * allowance per recipient. The address is used as a key only, never logged.
 */
export function sealedSendKey(recipient: string, source: string): string {
  return `${recipient}|${source}`;
}
