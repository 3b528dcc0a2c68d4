import type { KeyCountResponse, PreKeyBundleResponse, UploadKeysRequest } from "@zimchat/protocol";
import { HttpError } from "../errors.js";
import type { PluginHost } from "../plugins/plugin-host.js";
import type { AccountStore } from "../stores/account-store.js";
import type { KeyStore, KeyUpload, SignedStoredKey } from "../stores/key-store.js";
import { unauthorized, type DevicePrincipal } from "./account-service.js";
import type { RateLimiter } from "./rate-limiter.js";
import { checkKyberKey, checkSignature, fromBase64, parseEcKey } from "./signal-keys.js";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/** Told which device's one-time keys are being claimed faster than its budget allows. */
export type DrainListener = (device: DevicePrincipal) => void;

/** Key upload, counts and pre-key bundles (the semantics of Signal's key directory). */
export class KeyService {
  private readonly drainListeners: DrainListener[] = [];
  /** When each draining device was last announced (at most once per budget window; entries expire). */
  private readonly announced = new Map<string, number>();

  constructor(
    private readonly keys: KeyStore,
    private readonly accounts: AccountStore,
    private readonly limiter: RateLimiter,
    private readonly plugins: PluginHost,
    private readonly drainNoticeEveryMs = 60_000,
  ) {}

  /** Calls `listener` when a device's per-target claim budget is spent (the gateway tells the device). */
  onDrain(listener: DrainListener): void {
    this.drainListeners.push(listener);
  }

  /**
   * Checks every key and every signature against the account's stored
   * identity key, then stores all of them in one transaction. One bad key or
   * signature refuses the whole request and stores nothing. Plugins hear of
   * the upload (`keysUploaded`, counts only) after the commit.
   */
  async upload(principal: DevicePrincipal, request: UploadKeysRequest): Promise<void> {
    const account = await this.accounts.find(principal.accountId);
    if (!account) throw unauthorized();
    const identityKey = parseEcKey(account.identityKey, "the stored identity key");

    const signedKey = (
      key: { keyId: number; publicKey: string; signature: string },
      what: string,
      kyber: boolean,
    ): SignedStoredKey => {
      const publicKey = fromBase64(key.publicKey);
      const signature = fromBase64(key.signature);
      if (kyber) checkKyberKey(publicKey, what);
      else parseEcKey(publicKey, what);
      checkSignature(identityKey, publicKey, signature, what);
      return { keyId: key.keyId, publicKey, signature };
    };
    const distinct = (ids: number[], what: string): void => {
      if (new Set(ids).size !== ids.length) {
        throw new HttpError("invalid_request", `${what} repeats a keyId`, {
          issues: [{ path: [what], message: "duplicate keyId" }],
        });
      }
    };

    const upload: KeyUpload = {};
    if (request.signedPreKey) upload.signedPreKey = signedKey(request.signedPreKey, "signedPreKey", false);
    if (request.pqLastResortPreKey)
      upload.kyberLastResort = signedKey(request.pqLastResortPreKey, "pqLastResortPreKey", true);
    // As in Signal's key directory, an empty list leaves the stored keys alone.
    if (request.preKeys?.length) {
      distinct(
        request.preKeys.map((k) => k.keyId),
        "preKeys",
      );
      upload.ecPreKeys = request.preKeys.map((k, i) => {
        const publicKey = fromBase64(k.publicKey);
        parseEcKey(publicKey, `preKeys[${i}]`);
        return { keyId: k.keyId, publicKey };
      });
    }
    if (request.pqPreKeys?.length) {
      distinct(
        request.pqPreKeys.map((k) => k.keyId),
        "pqPreKeys",
      );
      upload.kyberPreKeys = request.pqPreKeys.map((k, i) => signedKey(k, `pqPreKeys[${i}]`, true));
    }
    await this.keys.store(principal.accountId, principal.deviceId, upload);
    await this.plugins.emit("keysUploaded", {
      accountId: principal.accountId,
      deviceId: principal.deviceId,
      ecPreKeys: upload.ecPreKeys?.length ?? 0,
      kyberPreKeys: upload.kyberPreKeys?.length ?? 0,
      signedPreKey: upload.signedPreKey !== undefined,
      lastResortKey: upload.kyberLastResort !== undefined,
      time: Date.now(),
    });
  }

  /** The device's remaining one-time keys, and whether they are being drained (its claim budget is spent now). */
  async counts(principal: DevicePrincipal): Promise<KeyCountResponse> {
    const [counts, draining] = await Promise.all([
      this.keys.counts(principal.accountId, principal.deviceId),
      this.limiter.exhausted("preKeyClaimsPerTarget", deviceKey(principal.accountId, principal.deviceId)),
    ]);
    // Only said when true: the field is new, and older clients compare the counts alone.
    return draining ? { ...counts, draining } : counts;
  }

  /**
   * Bundles for one device or all devices of `target`, each with one claimed
   * one-time EC key (or none) and one claimed one-time Kyber key (or the
   * last-resort key). Rate limited per requester and target (429). One-time
   * keys are also budgeted per target device across all requesters and per
   * requester across all targets ("Prekey Pogo"); a requester is a local
   * account, or another server asking for its users (federation, with its
   * own budgets per origin server): past either budget the
   * bundle carries no one-time EC key and the last-resort Kyber key, which
   * still makes a working PQXDH session, and the drained device is told.
   */
  async bundles(
    requester: DevicePrincipal | { origin: string },
    target: string,
    deviceId: number | "*",
  ): Promise<PreKeyBundleResponse> {
    // A local device's budgets, or (federation) the asking server's: a hostile server has its own, small, budgets.
    const [bundleLimit, claimLimit, who] =
      "origin" in requester
        ? (["federationPreKeyBundle", "federationPreKeyClaims", requester.origin] as const)
        : (["preKeyBundle", "preKeyClaimsPerRequester", requester.accountId] as const);
    await this.limiter.consume(bundleLimit, `${who}:${target}`);
    const account = await this.accounts.find(target);
    if (!account) throw new HttpError("not_found", "No such account");
    const mayClaim = async (id: number): Promise<boolean> => {
      if (!(await this.limiter.tryConsume(claimLimit, who))) return false;
      if (await this.limiter.tryConsume("preKeyClaimsPerTarget", deviceKey(target, id))) return true;
      this.announceDrain({ accountId: target, deviceId: id });
      return false;
    };
    const devices = await this.keys.claimBundles(target, deviceId === "*" ? undefined : deviceId, mayClaim);
    if (!devices.length) throw new HttpError("not_found", "No such device");
    const signed = (k: SignedStoredKey): { keyId: number; publicKey: string; signature: string } => ({
      keyId: k.keyId,
      publicKey: b64(k.publicKey),
      signature: b64(k.signature),
    });
    return {
      identityKey: b64(account.identityKey),
      devices: devices.map((d) => ({
        deviceId: d.deviceId,
        registrationId: d.registrationId,
        signedPreKey: signed(d.signedPreKey),
        preKey: d.ecPreKey ? { keyId: d.ecPreKey.keyId, publicKey: b64(d.ecPreKey.publicKey) } : null,
        pqPreKey: signed(d.kyberPreKey),
      })),
    };
  }

  private announceDrain(device: DevicePrincipal): void {
    const key = deviceKey(device.accountId, device.deviceId);
    const now = Date.now();
    if (now - (this.announced.get(key) ?? -Infinity) < this.drainNoticeEveryMs) return;
    if (this.announced.size > 10_000) {
      for (const [k, at] of this.announced) if (now - at >= this.drainNoticeEveryMs) this.announced.delete(k);
    }
    this.announced.set(key, now);
    for (const listener of this.drainListeners) listener(device);
  }
}

function deviceKey(accountId: string, deviceId: number): string {
  return `${accountId}.${deviceId}`;
}
