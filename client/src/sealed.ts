/**
 * Sealed sender on the client: the pinned trust root, the cached sender
 * certificate, and what this device knows of other accounts' access keys.
 * The seal and unseal operations themselves are libsignal's.
 *
 * Federation: the trust root of each other server (from its signed server
 * document, as the homeserver verified it) is pinned per server on first
 * use, like the homeserver's. A sender certificate is checked against the
 * root of the one server its sender is bound to, never against a set of
 * roots (any server could then mint certificates for any other's users).
 */
import { createHash } from "node:crypto";
import { serverDocumentSchema } from "@zimchat/protocol";
import {
  parseSenderCertificate,
  senderCertificateBytes,
  senderCertificateExpiration,
  senderCertificateValid,
  type SenderCertificate,
} from "./signal/certificates.js";
import type { DeviceStore } from "./store/device-store.js";
import type { HttpApi } from "./http-api.js";
import { TrustRootMismatchError } from "./errors.js";

const bytes = (s: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;

/** Renew a cached sender certificate this long before it expires. */
const renewBeforeMs = 3_600_000;

/** Another server's trust root is compared with the pinned one at most this often (per process), unless forced. */
const remoteRecheckMs = 3_600_000;

/** The fingerprint admins publish: SHA-256 of the serialized trust root key, hex in groups of four. */
export function trustRootFingerprint(publicKey: Uint8Array): string {
  return createHash("sha256").update(publicKey).digest("hex").match(/.{4}/g)!.join(" ");
}

/** Trust root, sender certificate and access keys, kept in the device store. */
export class SealedSenderState {
  /** When each other server's trust root was last compared with the pinned one (this process). */
  private readonly remoteCheckedAt = new Map<string, number>();
  /** The stored sender certificate (base64), parsed. */
  private parsed: { value: string; certificate: SenderCertificate; expiration: number } | null = null;

  constructor(
    private readonly store: DeviceStore,
    private readonly api: HttpApi,
  ) {}

  /**
   * Fetches the server's trust root and pins it, on first contact; later
   * calls compare. `expectedFingerprint` (published by the admin out of
   * band) is checked when given.
   * @throws TrustRootMismatchError when it differs from the pinned or expected one
   */
  async pinTrustRoot(expectedFingerprint?: string): Promise<Uint8Array<ArrayBuffer>> {
    const { publicKey } = await this.api.trustRoot();
    const presented = trustRootFingerprint(bytes(publicKey));
    const pinned = this.store.getValue("trustRoot");
    if (pinned && pinned !== publicKey)
      throw new TrustRootMismatchError(trustRootFingerprint(bytes(pinned)), presented);
    if (expectedFingerprint && normalize(expectedFingerprint) !== normalize(presented)) {
      throw new TrustRootMismatchError(expectedFingerprint, presented);
    }
    if (!pinned) this.store.setValue("trustRoot", publicKey);
    return bytes(publicKey);
  }

  /** The pinned trust root (serialized public key), or null before first contact. */
  trustRoot(): Uint8Array<ArrayBuffer> | null {
    const pinned = this.store.getValue("trustRoot");
    return pinned ? bytes(pinned) : null;
  }

  /** Pins a trust root handed over by this account's primary device (linking). */
  adoptTrustRoot(publicKey: string): void {
    this.store.setValue("trustRoot", publicKey);
  }

  /**
   * A valid sender certificate for this device (cached until an hour before
   * it expires), checked against the pinned trust root; null when the
   * server offers none or it does not validate (sending falls back to
   * authenticated envelopes).
   */
  async certificate(now = Date.now()): Promise<SenderCertificate | null> {
    const cached = this.store.getValue("senderCertificate");
    if (cached) {
      // Parsed once per stored value (every send asks).
      if (this.parsed?.value !== cached) {
        const certificate = parseSenderCertificate(bytes(cached));
        this.parsed = { value: cached, certificate, expiration: senderCertificateExpiration(certificate) };
      }
      if (this.parsed.expiration - renewBeforeMs > now) return this.parsed.certificate;
    }
    const root = this.trustRoot();
    if (!root) return null;
    const fresh = parseSenderCertificate(bytes((await this.api.senderCertificate()).certificate));
    if (!senderCertificateValid(fresh, root, now)) {
      const presented = trustRootFingerprint(bytes((await this.api.trustRoot()).publicKey));
      throw new TrustRootMismatchError(trustRootFingerprint(root), presented);
    }
    this.store.setValue("senderCertificate", Buffer.from(senderCertificateBytes(fresh)).toString("base64"));
    return fresh;
  }

  /**
   * Pins the trust root the server presents now in place of the pinned one
   * (after the user checked its fingerprint), drops the cached certificate
   * and any permission to send unsealed.
   * @throws TrustRootMismatchError when `expectedFingerprint` is given and differs
   * @returns the fingerprint now pinned
   */
  async acceptTrustRoot(expectedFingerprint?: string): Promise<string> {
    const { publicKey } = await this.api.trustRoot();
    const presented = trustRootFingerprint(bytes(publicKey));
    if (expectedFingerprint && normalize(expectedFingerprint) !== normalize(presented))
      throw new TrustRootMismatchError(expectedFingerprint, presented);
    this.store.setValue("trustRoot", publicKey);
    this.store.setValue("senderCertificate", "");
    this.store.setValue("unsealedWhileTrustRootChanged", "");
    return presented;
  }

  /** While the trust root differs from the pinned one, send authenticated rather than hold sealed sends. */
  allowUnsealed(): void {
    this.store.setValue("unsealedWhileTrustRootChanged", "1");
  }

  /** Whether the app allowed authenticated sending while the trust root differs. */
  unsealedAllowed(): boolean {
    return this.store.getValue("unsealedWhileTrustRootChanged") === "1";
  }

  /** The trust root pinned for another server (serialized public key), or null before first contact. */
  remoteTrustRoot(server: string): Uint8Array<ArrayBuffer> | null {
    const pinned = this.store.getValue(`trustRoot:${server}`);
    return pinned ? bytes(pinned) : null;
  }

  /** Whether another server's trust root is due for a comparison with the pinned one. */
  remoteCheckDue(server: string, now = Date.now()): boolean {
    return !this.remoteTrustRoot(server) || now - (this.remoteCheckedAt.get(server) ?? 0) >= remoteRecheckMs;
  }

  /** Another server's trust root as it presents it now (base64), through the homeserver. */
  async presentedRemoteTrustRoot(server: string): Promise<string> {
    const document = serverDocumentSchema.parse(await this.api.remoteServerDocument(server));
    if (document.server !== server)
      throw new Error(`the document fetched for ${server} names another server (${document.server})`);
    return document.trustRoot;
  }

  /**
   * Pins another server's trust root, as `presentedRemoteTrustRoot` gave it,
   * on first contact; later calls compare (run inside a store task).
   * @throws TrustRootMismatchError (with `server`) when it differs from the pinned one
   */
  pinRemoteTrustRoot(server: string, presented: string, now = Date.now()): void {
    const pinned = this.store.getValue(`trustRoot:${server}`);
    // While it differs, every sealed send to its users asks again (and is held).
    if (pinned && pinned !== presented) this.remoteCheckedAt.delete(server);
    if (pinned && pinned !== presented)
      throw new TrustRootMismatchError(
        trustRootFingerprint(bytes(pinned)),
        trustRootFingerprint(bytes(presented)),
        server,
      );
    if (!pinned) this.store.setValue(`trustRoot:${server}`, presented);
    this.remoteCheckedAt.set(server, now);
  }

  /**
   * Pins the trust root another server presents now in place of the pinned
   * one (after the user checked its fingerprint with that server's admin),
   * and drops the permission to send its users unsealed.
   * @throws TrustRootMismatchError when `expectedFingerprint` is given and differs
   * @returns the fingerprint now pinned
   */
  acceptRemoteTrustRoot(server: string, presented: string, expectedFingerprint?: string): string {
    const fingerprint = trustRootFingerprint(bytes(presented));
    if (expectedFingerprint && normalize(expectedFingerprint) !== normalize(fingerprint))
      throw new TrustRootMismatchError(expectedFingerprint, fingerprint, server);
    this.store.setValue(`trustRoot:${server}`, presented);
    this.store.setValue(`unsealedWhileTrustRootChanged:${server}`, "");
    this.remoteCheckedAt.set(server, Date.now());
    return fingerprint;
  }

  /** While another server's trust root differs from the pinned one, send its users authenticated. */
  allowUnsealedTo(server: string): void {
    this.store.setValue(`unsealedWhileTrustRootChanged:${server}`, "1");
  }

  /** Whether the app allowed authenticated sending to another server's users while its trust root differs. */
  unsealedAllowedTo(server: string): boolean {
    return this.store.getValue(`unsealedWhileTrustRootChanged:${server}`) === "1";
  }

  /** A contact's access key, as learned from their messages. */
  accessKeyOf(uuid: string): string | null {
    return this.store.getValue(`accessKey:${uuid}`);
  }

  /** Remembers a contact's access key (inside a store transaction). */
  rememberAccessKey(uuid: string, accessKey: string): void {
    if (this.store.getValue(`accessKey:${uuid}`) !== accessKey) this.store.setValue(`accessKey:${uuid}`, accessKey);
  }

  /** Forgets a contact's access key (it was refused: they changed it). */
  forgetAccessKey(uuid: string): void {
    this.store.setValue(`accessKey:${uuid}`, "");
  }
}

function normalize(fingerprint: string): string {
  return fingerprint.replace(/\s+/g, "").toLowerCase();
}
