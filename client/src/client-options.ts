/** Options for creating, registering and linking a {@link ZimClient}. */
import type { KeyTransparencyOptions } from "./key-transparency.js";
import type { KeyPolicy } from "./keys.js";
import type { SendRetryPolicy } from "./send-retry.js";
import type { DeviceStore } from "./store/device-store.js";
import type { TrustPolicy } from "./trust.js";

/** Options for {@link ZimClient}. */
export interface ZimClientOptions {
  store: DeviceStore;
  /** @default trust on first use, with verified contacts blocked on change */
  trustPolicy?: TrustPolicy;
  keyPolicy?: Partial<KeyPolicy>;
  /** Send an encrypted delivery receipt for received messages. @default true */
  sendReceipts?: boolean;
  /**
   * Hold delivery receipts this long and send them together, one per
   * sender. Receipts tell the server (through timing) who talks to whom, so
   * delaying and batching them blurs that link. @default 0 (after each batch)
   */
  receiptDelayMs?: number;
  /** Send sealed (the server does not learn the sender) whenever the recipient's access key is known. @default true */
  sealedSender?: boolean;
  /**
   * Retrying a send that got no answer (connection lost, server restarted,
   * 5xx), always with the send's idempotency key, so the server stores it
   * once. @default {@link defaultSendRetryPolicy} (one minute); `{ maxMs: 0 }` turns retries off
   */
  sendRetry?: Partial<SendRetryPolicy>;
  /**
   * Check every identity key the server hands out against the server's
   * key-transparency log, and every log head against the last one seen
   * (`keyTransparencyFailure` reports problems). `{}` (the default) uses the
   * log when the server offers it and pins its key on first use; give
   * `publicKey` to require a log signed by that key; `false` turns the
   * checks off. @default {}
   */
  keyTransparency?: KeyTransparencyOptions | false;
  /**
   * Allow a plain `http://` server URL to a host that is not loopback
   * (127.0.0.0/8, ::1, localhost are always allowed). Only for a network you
   * trust end to end: passwords and metadata travel in clear. Given to
   * `register` or `link`, the choice is kept in the store for later
   * constructions. @default false
   */
  allowInsecureHttp?: boolean;
  /**
   * A display name (1 to 64 characters) this device's messages carry,
   * encrypted, beside the account's username; kept in the store (see
   * `setDisplayName`). Receivers never verify it: they show it beside the
   * verified username. @default none
   */
  displayName?: string;
}

/** Options for {@link ZimClient.register}. */
export interface RegisterOptions extends ZimClientOptions {
  serverUrl: string;
  username: string;
  inviteToken?: string;
  /** Accept sealed messages from anyone, without an access key. @default false */
  unrestrictedAccess?: boolean;
  /** The trust root fingerprint the admin published: checked before it is pinned. */
  trustRootFingerprint?: string;
}

/** Options for {@link ZimClient.link}. */
export interface LinkOptions extends ZimClientOptions {
  serverUrl: string;
  /** Called with the link URI (show it as text and QR) and when it expires. */
  onLinkCode: (link: { uri: string; expiresAt: number }) => void;
  /** How often to ask whether the primary device confirmed. @default 1000 */
  pollIntervalMs?: number;
  signal?: AbortSignal;
}
