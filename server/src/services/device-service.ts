import { createHash, randomBytes } from "node:crypto";
import type {
  ConfirmLinkRequest,
  CreateLinkResponse,
  DeviceListResponse,
  LinkDeviceRequest,
  LinkDeviceResponse,
  LinkStatusResponse,
} from "@zimchat/protocol";
import type { Bytes } from "../db/database.js";
import { HttpError } from "../errors.js";
import type { PluginHost } from "../plugins/plugin-host.js";
import { LinkRefusedError, type DeviceStore, type LinkRefusal, type NewLinkedDevice } from "../stores/device-store.js";
import { dayMs } from "../util/day.js";
import { hashPassword } from "../util/password.js";
import type { DevicePrincipal } from "./account-service.js";
import type { RateLimiter } from "./rate-limiter.js";
import { checkKyberKey, checkSignature, fromBase64, parseEcKey } from "./signal-keys.js";

/** A change to an account's device list, after it committed. */
export interface DevicesChange {
  accountId: string;
  /** The devices that were removed (their connections should be closed). */
  removedDeviceIds: number[];
}

/** Called after a device is linked or removed (the gateway tells the account's connections). */
export type DevicesChangedListener = (change: DevicesChange) => void;

/** The limits {@link DeviceService} applies. */
export interface DeviceServiceOptions {
  /** Devices per account, the primary included. */
  maxDevicesPerAccount: number;
  /** How long a linking code is valid. */
  linkCodeTtlMs: number;
}

const day = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/** Only a hash of a linking code is stored, so a database dump cannot complete a link. */
function hashCode(code: string): Bytes {
  return createHash("sha256").update(code, "utf8").digest() as Bytes;
}

const refusals: Record<LinkRefusal, () => HttpError> = {
  not_found: () => new HttpError("link_not_found", "The linking code is unknown or already used"),
  expired: () => new HttpError("link_expired", "The linking code has expired; start again on the new device"),
  not_confirmed: () =>
    new HttpError("link_not_confirmed", "The primary device has not confirmed this linking code yet"),
  too_many_devices: () => new HttpError("too_many_devices", "The account has as many devices as this server allows"),
};

/**
 * Multi-device linking and the device list. A new device asks for a linking
 * code; the primary device confirms it with a provisioning message sealed
 * to the new device (opaque here); the new device fetches that message and
 * registers itself with the code, getting the lowest free device id.
 */
export class DeviceService {
  private readonly listeners = new Set<DevicesChangedListener>();

  constructor(
    private readonly devices: DeviceStore,
    private readonly limiter: RateLimiter,
    private readonly options: DeviceServiceOptions,
    private readonly plugins: PluginHost,
  ) {}

  /** Subscribes to committed device-list changes. */
  onDevicesChanged(listener: DevicesChangedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A new single-use linking code (rate limited per client address, which is not stored). */
  async createLink(clientAddress: string): Promise<CreateLinkResponse> {
    await this.limiter.consume("linkCode", clientAddress);
    const code = randomBytes(16).toString("base64url");
    const expiresAt = Date.now() + this.options.linkCodeTtlMs;
    await this.devices.createLink(hashCode(code), expiresAt);
    return { code, expiresAt };
  }

  /**
   * The primary device confirms a code for its account with the sealed
   * provisioning message. @throws HttpError `forbidden` (not device 1),
   * `link_not_found`, `link_expired`, `link_already_confirmed`
   */
  async confirmLink(principal: DevicePrincipal, code: string, request: ConfirmLinkRequest): Promise<void> {
    if (principal.deviceId !== 1) throw new HttpError("forbidden", "Only the primary device can link devices");
    const outcome = await this.devices.confirm(
      hashCode(code),
      principal.accountId,
      fromBase64(request.provisioningMessage),
      Date.now(),
    );
    switch (outcome) {
      case "confirmed":
        return;
      case "not_found":
        throw refusals.not_found();
      case "expired":
        throw refusals.expired();
      case "already_confirmed":
        throw new HttpError("link_already_confirmed", "The linking code has already been confirmed");
    }
  }

  /** Whether a code is confirmed and, once it is, the provisioning message. */
  async linkStatus(code: string): Promise<LinkStatusResponse> {
    const row = await this.devices.findLink(hashCode(code));
    if (!row) throw refusals.not_found();
    if (row.expiresAt <= Date.now()) throw refusals.expired();
    if (row.accountId === null || row.provisioningMessage === null) return { confirmed: false };
    return { confirmed: true, provisioningMessage: Buffer.from(row.provisioningMessage).toString("base64") };
  }

  /**
   * Registers the new device: consumes the code, checks the signed keys
   * against the account's identity key, and creates the device with the
   * lowest free id, in one transaction; any refusal changes nothing.
   */
  async link(request: LinkDeviceRequest): Promise<LinkDeviceResponse> {
    // Keys are parsed before the transaction; only the signatures need the account.
    const signedPreKey = signedKey(request.signedPreKey);
    const kyberLastResort = signedKey(request.pqLastResortPreKey);
    parseEcKey(signedPreKey.publicKey, "signedPreKey.publicKey");
    checkKyberKey(kyberLastResort.publicKey, "pqLastResortPreKey.publicKey");
    const { salt, hash } = hashPassword(request.password);
    const prepare = (identityKeyBytes: Bytes): NewLinkedDevice => {
      const identityKey = parseEcKey(identityKeyBytes, "the stored identity key");
      checkSignature(identityKey, signedPreKey.publicKey, signedPreKey.signature, "signedPreKey");
      checkSignature(identityKey, kyberLastResort.publicKey, kyberLastResort.signature, "pqLastResortPreKey");
      return {
        registrationId: request.registrationId,
        passwordSalt: salt,
        passwordHash: hash,
        signedPreKey,
        kyberLastResort,
      };
    };
    let linked;
    try {
      linked = await this.devices.link(hashCode(request.code), Date.now(), this.options.maxDevicesPerAccount, prepare);
    } catch (error) {
      if (error instanceof LinkRefusedError) throw refusals[error.reason]();
      throw error;
    }
    this.notify({ accountId: linked.accountId, removedDeviceIds: [] });
    await this.plugins.emit("deviceLinked", {
      accountId: linked.accountId,
      deviceId: linked.deviceId,
      time: Date.now(),
    });
    return { uuid: linked.accountId, deviceId: linked.deviceId, username: linked.username };
  }

  /** The account's devices, dates at day granularity. */
  async list(principal: DevicePrincipal): Promise<DeviceListResponse> {
    const rows = await this.devices.list(principal.accountId);
    return {
      devices: rows.map((d) => ({
        id: d.id,
        created: day(d.createdAt.getTime()),
        lastSeen: d.lastSeenDay > 0 ? day(d.lastSeenDay * dayMs) : null,
      })),
    };
  }

  /**
   * Unlinks a device: the primary may remove any other device, any device
   * may remove itself, the primary cannot be removed. Its keys and queue are
   * deleted with it. @throws HttpError `forbidden`, `not_found`
   */
  async remove(principal: DevicePrincipal, deviceId: number): Promise<void> {
    if (deviceId === 1) throw new HttpError("forbidden", "The primary device cannot be removed");
    if (principal.deviceId !== 1 && principal.deviceId !== deviceId) {
      throw new HttpError("forbidden", "Only the primary device can remove other devices");
    }
    await this.unlink(principal.accountId, deviceId, "unlinked");
  }

  /**
   * An admin removes a linked device (not the primary: deleting the account
   * is the way to remove that one). @throws HttpError `forbidden`, `not_found`
   */
  async removeByAdmin(accountId: string, deviceId: number): Promise<void> {
    if (deviceId === 1)
      throw new HttpError("forbidden", "The primary device cannot be removed; delete the account instead");
    await this.unlink(accountId, deviceId, "removed_by_admin");
  }

  /**
   * Tells the gateway and the plugins that an account's devices are gone
   * (the account was deleted with them).
   */
  async accountDeleted(accountId: string, deviceIds: number[]): Promise<void> {
    if (deviceIds.length) this.notify({ accountId, removedDeviceIds: deviceIds });
    const time = Date.now();
    await Promise.all(
      deviceIds.map((deviceId) =>
        this.plugins.emit("deviceRemoved", { accountId, deviceId, reason: "account_deleted", time }),
      ),
    );
  }

  private async unlink(accountId: string, deviceId: number, reason: "unlinked" | "removed_by_admin"): Promise<void> {
    if (!(await this.devices.remove(accountId, deviceId))) throw new HttpError("not_found", "No such device");
    this.notify({ accountId, removedDeviceIds: [deviceId] });
    await this.plugins.emit("deviceRemoved", { accountId, deviceId, reason, time: Date.now() });
  }

  /**
   * Replaces the account's identity key from its primary device (see
   * AccountService.resetIdentity), which removes every other device: their
   * connections are closed and the account's remaining one is told.
   */
  async resetIdentity(principal: DevicePrincipal, reset: () => Promise<void>): Promise<void> {
    const before = await this.devices.list(principal.accountId);
    await reset();
    const removed = before.map((d) => d.id).filter((id) => id !== 1);
    if (removed.length) this.notify({ accountId: principal.accountId, removedDeviceIds: removed });
    const time = Date.now();
    await Promise.all(
      removed.map((deviceId) =>
        this.plugins.emit("deviceRemoved", {
          accountId: principal.accountId,
          deviceId,
          reason: "identity_reset",
          time,
        }),
      ),
    );
  }

  /** Deletes expired linking codes. */
  async sweepExpiredLinks(): Promise<number> {
    return this.devices.deleteExpiredLinks(Date.now());
  }

  private notify(change: DevicesChange): void {
    for (const listener of this.listeners) listener(change);
  }
}

function signedKey(key: { keyId: number; publicKey: string; signature: string }): NewLinkedDevice["signedPreKey"] {
  return { keyId: key.keyId, publicKey: fromBase64(key.publicKey), signature: fromBase64(key.signature) };
}
