import { PublicKey, SenderCertificate } from "@signalapp/libsignal-client";
import type { SenderCertificateResponse, TrustRootResponse } from "@zimchat/protocol";
import type { AccountStore } from "../stores/account-store.js";
import { unauthorized, type DevicePrincipal } from "./account-service.js";
import { fingerprint, loadOrCreateKeys, type ServerKeys } from "./key-files.js";

/**
 * Sealed-sender certificates: the trust root clients pin, and short-lived
 * sender certificates (libsignal `SenderCertificate`) that bind an account
 * uuid, a device id and the account's identity key, signed by the server
 * key whose certificate the trust root signed.
 */
export class CertificateService {
  private keys: ServerKeys | null = null;

  constructor(
    private readonly dataDir: string,
    private readonly accounts: AccountStore,
    private readonly ttlMs: number,
  ) {}

  /**
   * Loads the key files from the data directory, creating missing ones.
   * The app calls this at start-up so a bad key file stops the server there;
   * commands that never issue certificates never touch the files.
   * @throws KeyFileError (a ConfigError) for a key file readable by others
   */
  open(): ServerKeys {
    return (this.keys ??= loadOrCreateKeys(this.dataDir).keys);
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
