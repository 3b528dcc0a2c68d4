import { PublicKey, SenderCertificate } from "@signalapp/libsignal-client";
import type { SenderCertificateResponse, TrustRootResponse } from "@zimchat/protocol";
import type { AccountStore } from "../stores/account-store.js";
import { unauthorized, type DevicePrincipal } from "./account-service.js";
import {
  fingerprint,
  loadOrCreateKeys,
  readServerKeys,
  rotateServerKey,
  serverKeyStamp,
  type ServerKeys,
} from "./key-files.js";

/** How often the key files are checked for a rotation done by another node sharing the data directory. @default 5 s */
export const keyReloadIntervalMs = 5000;

/**
 * Sealed-sender certificates: the trust root clients pin, and short-lived
 * sender certificates (libsignal `SenderCertificate`) that bind an account
 * uuid, a device id and the account's identity key, signed by the server
 * key whose certificate the trust root signed.
 */
export class CertificateService {
  private keys: ServerKeys | null = null;
  private stamp = "";
  private checkedAt = 0;

  constructor(
    private readonly dataDir: string,
    private readonly accounts: AccountStore,
    private readonly ttlMs: number,
    private readonly reloadIntervalMs = keyReloadIntervalMs,
  ) {}

  /**
   * Loads the key files from the data directory, creating missing ones.
   * The app calls this at start-up so a bad key file stops the server there;
   * commands that never issue certificates never touch the files.
   * @throws KeyFileError (a ConfigError) for a key file readable by others
   */
  open(): ServerKeys {
    if (!this.keys) {
      this.keys = loadOrCreateKeys(this.dataDir).keys;
      this.stamp = serverKeyStamp(this.dataDir);
      this.checkedAt = Date.now();
    } else if (Date.now() - this.checkedAt >= this.reloadIntervalMs) this.reloadIfRotated();
    return this.keys;
  }

  /**
   * Replaces the server key and certificate (see {@link rotateServerKey});
   * other nodes sharing the data directory pick them up within the reload interval.
   * @throws TrustRootOfflineError when the trust root's private key is not in the data directory
   */
  rotate(): { keyId: number; previousKeyId: number; trustRootFingerprint: string } {
    this.open();
    const { keys, previousKeyId } = rotateServerKey(this.dataDir);
    this.keys = keys;
    this.stamp = serverKeyStamp(this.dataDir);
    return { keyId: keys.serverCertificate.keyId(), previousKeyId, trustRootFingerprint: fingerprint(keys.trustRoot) };
  }

  /** Re-reads the key files when another process replaced them; a half-written rotation is read on the next check. */
  private reloadIfRotated(): void {
    this.checkedAt = Date.now();
    const stamp = serverKeyStamp(this.dataDir);
    if (stamp === this.stamp) return;
    const keys = readServerKeys(this.dataDir);
    if (!keys) return;
    this.keys = keys;
    this.stamp = stamp;
  }

  /** The trust root public key and its fingerprint. */
  trustRoot(): TrustRootResponse {
    const { trustRoot } = this.open();
    return { publicKey: Buffer.from(trustRoot.serialize()).toString("base64"), fingerprint: fingerprint(trustRoot) };
  }

  /** A sender certificate for the device, valid for the configured lifetime. */
  async senderCertificate(principal: DevicePrincipal, now = Date.now()): Promise<SenderCertificateResponse> {
    const { serverCertificate, serverKey } = this.open();
    const account = await this.accounts.find(principal.accountId);
    if (!account) throw unauthorized();
    const expiresAt = now + this.ttlMs;
    const certificate = SenderCertificate.new(
      principal.accountId,
      null,
      principal.deviceId,
      PublicKey.deserialize(account.identityKey),
      expiresAt,
      serverCertificate,
      serverKey,
    );
    return { certificate: Buffer.from(certificate.serialize()).toString("base64"), expiresAt };
  }
}
