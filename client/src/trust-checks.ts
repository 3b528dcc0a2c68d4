/**
 * Trust in contacts and in the server: safety numbers and verification,
 * accepting a changed identity key, key-transparency checks on demand, and
 * the sealed-sender trust root.
 */
import { checkKeyLog, localDevice, type ClientContext } from "./client-context.js";
import type { KeyTransparencyFailure } from "./key-transparency.js";
import type { Outbox } from "./outbox.js";
import type { Sessions } from "./sessions.js";
import {
  matchesSafetyNumber,
  publicKeyBytesOf,
  publicKeyFromBytes,
  privateKeyFromBytes,
  publicKeyOf,
  safetyNumber,
  type SafetyNumber,
} from "./signal/index.js";

export class TrustChecks {
  constructor(
    private readonly ctx: ClientContext,
    private readonly sessions: Sessions,
    private readonly outbox: Outbox,
  ) {}

  /** The identity key known for a contact (account id), fetching it (starting sessions) on first contact. */
  private async knownKey(uuid: string, user: string): Promise<{ key: Uint8Array<ArrayBuffer>; fetched: boolean }> {
    let known = this.ctx.store.getIdentity(uuid);
    const fetched = !known;
    if (fetched) {
      await this.ctx.tasks.run(() => this.sessions.start(uuid, "*"));
      known = this.ctx.store.getIdentity(uuid);
    }
    if (!known) throw new Error(`no identity key known for ${user}`);
    return { key: known.publicKey, fetched };
  }

  async safetyNumber(uuid: string, user: string): Promise<SafetyNumber> {
    const { key } = await this.knownKey(uuid, user);
    const local = localDevice(this.ctx);
    return safetyNumber(
      local.uuid,
      publicKeyOf(privateKeyFromBytes(local.identityPrivateKey)),
      uuid,
      publicKeyFromBytes(key),
    );
  }

  /** This account's half of every safety number: the first 30 of the 60 digits when it talks to itself. */
  identityFingerprint(): string {
    const local = localDevice(this.ctx);
    const key = publicKeyOf(privateKeyFromBytes(local.identityPrivateKey));
    return safetyNumber(local.uuid, key, local.uuid, key).grouped.split(" ").slice(0, 6).join(" ");
  }

  async verify(uuid: string, entered: string): Promise<boolean> {
    const expected = await this.safetyNumber(uuid, uuid);
    if (!matchesSafetyNumber(expected, entered)) return false;
    const { store } = this.ctx;
    await this.ctx.tasks.run(async () =>
      store.saveIdentity({ ...store.getIdentity(uuid)!, verified: true, blocked: false }),
    );
    return true;
  }

  async acceptIdentityChange(uuid: string): Promise<void> {
    const { store } = this.ctx;
    await this.ctx.tasks.run(async () => {
      const known = store.getIdentity(uuid);
      if (known) store.saveIdentity({ ...known, verified: false, blocked: false });
    });
  }

  trustState(uuid: string): { verified: boolean; blocked: boolean } | null {
    const known = this.ctx.store.getIdentity(uuid);
    return known ? { verified: known.verified, blocked: known.blocked } : null;
  }

  async checkKeyTransparency(uuid: string, user: string): Promise<KeyTransparencyFailure | null> {
    // First contact: starting the sessions checks the key (and emits a failure); the answer below repeats that check
    // quietly.
    const { key, fetched } = await this.knownKey(uuid, user);
    return checkKeyLog(this.ctx, uuid, key, !fetched);
  }

  /**
   * Checks this account's own key against the log, when due (contacts will check it; this also pins the log key early).
   */
  checkOwnKey(): void {
    const { keyLog } = this.ctx;
    if (!keyLog) return;
    const local = localDevice(this.ctx);
    const ownKey = publicKeyBytesOf(local.identityPrivateKey);
    if (keyLog.isDue(local.uuid, ownKey)) this.ctx.inBackground(checkKeyLog(this.ctx, local.uuid, ownKey));
  }

  /** Pins the trust root the homeserver (`server` null) or another server presents now. */
  async acceptTrustRoot(expectedFingerprint: string | undefined, server: string | null): Promise<string> {
    const { sealed, tasks } = this.ctx;
    if (server === null) {
      const fingerprint = await tasks.run(() => sealed.acceptTrustRoot(expectedFingerprint));
      this.outbox.trustRootAccepted();
      return fingerprint;
    }
    const presented = await sealed.presentedRemoteTrustRoot(server);
    const fingerprint = await tasks.run(async () =>
      sealed.acceptRemoteTrustRoot(server, presented, expectedFingerprint),
    );
    this.outbox.trustRootAccepted(server);
    return fingerprint;
  }

  /** While the trust root of the homeserver (`server` null) or another server differs, send authenticated. */
  async allowUnsealedSending(server: string | null): Promise<void> {
    const { sealed, tasks } = this.ctx;
    await tasks.run(async () => (server === null ? sealed.allowUnsealed() : sealed.allowUnsealedTo(server)));
  }
}
