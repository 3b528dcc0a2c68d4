/**
 * Sessions with other devices: started from the server's pre-key bundles
 * (checking the keys' signatures and the identity key against the
 * key-transparency log), repaired after the server's 409/410 device lists,
 * and used to encrypt one message for every device of an account.
 */
import type { OutgoingMessage, PreKeyBundleResponse, RecipientMismatch } from "@zimchat/protocol";
import { checkKeyLog, localDevice, otherOwnDevices, type ClientContext } from "./client-context.js";
import { ApiError, BadDeviceKeysError, UntrustedIdentityError } from "./errors.js";
import { isUntrustedIdentity, type Ciphertext, type SenderCertificate } from "./signal/index.js";

export class Sessions {
  constructor(private readonly ctx: ClientContext) {}

  /**
   * Fetches bundles and starts sessions (PQXDH) with one or every device of `uuid` (never this device itself): from
   * this homeserver, or through it from the server the account is bound to. An account never bound is this
   * homeserver's from here on (it answered for it).
   */
  async start(uuid: string, deviceId: number | "*"): Promise<void> {
    const { api, signal, events, servers } = this.ctx;
    const server = servers.serverOf(uuid);
    let bundle: PreKeyBundleResponse;
    try {
      bundle = server ? await api.remotePreKeyBundle(server, uuid, deviceId) : await api.preKeyBundle(uuid, deviceId);
    } catch (error) {
      if (error instanceof ApiError && error.code === "not_found" && deviceId !== "*") return;
      throw error;
    }
    if (server === undefined) servers.bind(uuid, null);
    const identityKey = signal.bundleIdentityKey(bundle);
    const local = localDevice(this.ctx);
    if (uuid !== local.uuid) await checkKeyLog(this.ctx, uuid, identityKey);
    for (const d of bundle.devices) {
      if (uuid === local.uuid && d.deviceId === local.deviceId) continue;
      const badKey = signal.unsignedDeviceKey(identityKey, d);
      if (badKey) {
        // Keys the account did not sign: the server (or its disk) changed them. Named, not a raw libsignal error.
        events.emit("badDeviceKeys", { uuid, deviceId: d.deviceId, key: badKey });
        throw new BadDeviceKeysError(uuid, d.deviceId, badKey);
      }
      await signal.startSession(uuid, identityKey, d);
    }
  }

  /** Brings sessions in line with the server's per-recipient device lists (after a 409 or 410). */
  async fixDevices(mismatches: RecipientMismatch[]): Promise<void> {
    for (const m of mismatches) {
      for (const id of m.extraDevices ?? []) this.ctx.signal.forgetSession(m.uuid, id);
      for (const id of m.staleDevices ?? []) this.ctx.signal.forgetSession(m.uuid, id);
      for (const id of [...(m.missingDevices ?? []), ...(m.staleDevices ?? [])]) await this.start(m.uuid, id);
    }
  }

  /** Device ids of `uuid` with a session, starting sessions with every device of a contact that has none. */
  async devicesOf(uuid: string): Promise<number[]> {
    if (!this.ctx.store.sessionDevices(uuid).length) await this.start(uuid, "*");
    return this.ctx.store.sessionDevices(uuid);
  }

  /**
   * One ciphertext per device of `uuid` this device has (or now starts) a session with; sealed when a certificate is
   * given.
   */
  async encryptForAll(
    uuid: string,
    padded: Uint8Array<ArrayBuffer>,
    certificate: SenderCertificate | null,
  ): Promise<OutgoingMessage[]> {
    const { store, signal } = this.ctx;
    if (store.getIdentity(uuid)?.blocked) throw new UntrustedIdentityError(uuid);
    const local = localDevice(this.ctx);
    let devices = store.sessionDevices(uuid);
    if (uuid === local.uuid) {
      for (const d of otherOwnDevices(this.ctx)) if (!devices.includes(d)) await this.start(uuid, d);
      devices = store.sessionDevices(uuid).filter((d) => d !== local.deviceId);
    } else if (!devices.length) {
      await this.start(uuid, "*");
      devices = store.sessionDevices(uuid);
    }
    // A certificate fetched before this device's identity key changed (resetIdentity) names the old key: send
    // authenticated.
    if (certificate && !signal.certificateIsCurrent(certificate)) certificate = null;
    const out: OutgoingMessage[] = [];
    for (const deviceId of devices) {
      const address = { uuid, deviceId };
      let message: Ciphertext;
      try {
        message = await signal.encrypt(padded, address);
      } catch (error) {
        if (!isUntrustedIdentity(error)) throw error;
        if (store.getIdentity(uuid)?.blocked) throw new UntrustedIdentityError(uuid);
        // The session was built on a key the user has since replaced (verified or accepted a new one): start over.
        signal.forgetSession(uuid, deviceId);
        await this.start(uuid, deviceId);
        message = await signal.encrypt(padded, address);
      }
      out.push(await signal.outgoing(message, address, certificate));
    }
    return out;
  }
}
