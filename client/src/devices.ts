/**
 * This account's devices: registering the first one, linking more (the new
 * device's side and the primary's approval), listing and unlinking them, and
 * a reinstall that replaces the identity key.
 */
import { randomBytes, randomInt } from "node:crypto";
import type { DeviceInfo } from "@zimchat/protocol";
import type { LinkOptions, RegisterOptions } from "./client-options.js";
import { localDevice, type ClientContext } from "./client-context.js";
import { HttpApi } from "./http-api.js";
import { linkUri, openProvisioning, parseLinkUri, sealProvisioning } from "./linking.js";
import type { Outbox } from "./outbox.js";
import { SealedSenderState } from "./sealed.js";
import { checkServerUrl } from "./server-url.js";
import {
  newEphemeralKey,
  newKyberPreKey,
  newPrivateKey,
  newSignedPreKey,
  privateKeyFromBytes,
  publicKeyBytesOf,
  publicKeyOf,
} from "./signal/index.js";
import type { LocalDevice } from "./store/device-store.js";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const bytes = (s: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;

/**
 * Creates an account in `options.store`: a new identity key pair,
 * registration id, password, access key, signed pre-key and Kyber
 * last-resort key, and pins the server's trust root. One transaction: a
 * refused registration leaves the store as it was.
 */
export async function registerAccount(options: RegisterOptions): Promise<void> {
  const { store } = options;
  if (store.getLocal()?.uuid) throw new Error("this store already holds a registered device");
  checkServerUrl(options.serverUrl, options);
  const identity = newPrivateKey();
  const pending: LocalDevice = {
    serverUrl: options.serverUrl,
    uuid: "",
    deviceId: 1,
    username: options.username,
    password: randomBytes(24).toString("base64url"),
    registrationId: randomInt(1, 16381),
    identityPrivateKey: identity,
    nextPreKeyId: randomInt(1, 0x7fff0000),
    accessKey: randomBytes(16).toString("base64"),
  };
  await store.transaction(async () => {
    store.setLocal(pending);
    if (options.allowInsecureHttp) store.setValue("allowInsecureHttp", "1");
    const api = new HttpApi(options.serverUrl);
    await new SealedSenderState(store, api).pinTrustRoot(options.trustRootFingerprint);
    const registered = await api.register({
      username: options.username,
      password: pending.password,
      registrationId: pending.registrationId,
      identityKey: b64(publicKeyBytesOf(identity)),
      signedPreKey: newSignedPreKey(store, identity),
      pqLastResortPreKey: newKyberPreKey(store, identity, true),
      ...(options.inviteToken ? { inviteToken: options.inviteToken } : {}),
    });
    store.setLocal({ ...store.getLocal()!, uuid: registered.uuid, deviceId: registered.deviceId });
    store.setValue("ownDevices", JSON.stringify([registered.deviceId]));
  });
}

/**
 * Links `options.store` as a new device of an existing account: shows a
 * link code, waits for the primary's sealed provisioning message, opens it
 * with an ephemeral key that never leaves this process, and registers this
 * device's own keys.
 */
export async function linkNewDevice(options: LinkOptions): Promise<void> {
  const { store } = options;
  if (store.getLocal()?.uuid) throw new Error("this store already holds a registered device");
  checkServerUrl(options.serverUrl, options);
  const api = new HttpApi(options.serverUrl);
  const ephemeral = newEphemeralKey();
  const { code, expiresAt } = await api.createLink();
  options.onLinkCode({
    uri: linkUri({ serverUrl: options.serverUrl, code, publicKey: publicKeyOf(ephemeral) }),
    expiresAt,
  });
  let sealedMessage: string | undefined;
  while (!sealedMessage) {
    options.signal?.throwIfAborted();
    const status = await api.linkStatus(code);
    if (status.confirmed) sealedMessage = status.provisioningMessage;
    else await new Promise((resolve) => setTimeout(resolve, options.pollIntervalMs ?? 1000));
  }
  const provisioning = openProvisioning(ephemeral, bytes(sealedMessage), code);
  const identity = bytes(provisioning.identityPrivateKey);
  privateKeyFromBytes(identity);
  const pending: LocalDevice = {
    serverUrl: options.serverUrl,
    uuid: provisioning.uuid,
    deviceId: 0,
    username: provisioning.username,
    password: randomBytes(24).toString("base64url"),
    registrationId: randomInt(1, 16381),
    identityPrivateKey: identity,
    nextPreKeyId: randomInt(1, 0x7fff0000),
    accessKey: provisioning.accessKey,
  };
  await store.transaction(async () => {
    store.setLocal(pending);
    if (options.allowInsecureHttp) store.setValue("allowInsecureHttp", "1");
    const sealed = new SealedSenderState(store, api);
    if (provisioning.trustRoot) sealed.adoptTrustRoot(provisioning.trustRoot);
    await sealed.pinTrustRoot();
    const linked = await api.linkDevice({
      code,
      password: pending.password,
      registrationId: pending.registrationId,
      signedPreKey: newSignedPreKey(store, identity),
      pqLastResortPreKey: newKyberPreKey(store, identity, true),
    });
    store.setLocal({ ...store.getLocal()!, deviceId: linked.deviceId });
  });
}

/** The devices of this account, as seen from one of them. */
export class Devices {
  constructor(
    private readonly ctx: ClientContext,
    private readonly outbox: Outbox,
  ) {}

  /**
   * Seals the account identity, access key and trust root to a new device's link request and attaches it to its code.
   */
  async approveLink(uri: string): Promise<void> {
    const local = localDevice(this.ctx);
    const request = parseLinkUri(uri);
    if (new URL(request.serverUrl).origin !== new URL(local.serverUrl).origin) {
      throw new Error(`the link request is for ${request.serverUrl}, this device's homeserver is ${local.serverUrl}`);
    }
    const trustRoot = this.ctx.store.getValue("trustRoot");
    const message = sealProvisioning(
      request.publicKey,
      {
        uuid: local.uuid,
        username: local.username,
        identityPrivateKey: b64(local.identityPrivateKey),
        accessKey: local.accessKey,
        ...(trustRoot ? { trustRoot } : {}),
      },
      request.code,
    );
    await this.ctx.api.confirmLink(request.code, { provisioningMessage: b64(message) });
  }

  /** Fetches the device list; emits `deviceListChanged` when it differs from the last one. */
  async refresh(): Promise<DeviceInfo[]> {
    const { api, tasks, store, signal, groups } = this.ctx;
    const { devices } = await api.devices();
    const local = localDevice(this.ctx);
    const change = await tasks.run(async () => {
      const before = JSON.parse(store.getValue("ownDevices") ?? "[]") as number[];
      const now = devices.map((d) => d.id);
      const added = now.filter((d) => !before.includes(d));
      const removed = before.filter((d) => !now.includes(d));
      store.setValue("ownDevices", JSON.stringify(now));
      for (const id of removed) signal.forgetSession(local.uuid, id);
      return { devices, added, removed };
    });
    if (change.added.length || change.removed.length) {
      this.ctx.events.emit("deviceListChanged", change);
      // A new device of this account learns the groups this device knows.
      if (change.added.some((d) => d !== local.deviceId)) {
        for (const group of groups.list()) {
          await this.outbox.syncToOwnDevices({ v: 1, timestamp: Date.now(), groupUpdate: group, sync: {} });
        }
      }
    }
    return devices;
  }

  async unlink(deviceId: number): Promise<void> {
    await this.ctx.api.removeDevice(deviceId);
    await this.refresh();
  }

  /** Replaces the identity key pair, registration id and signed keys, here and on the server; forgets every session. */
  async resetIdentity(): Promise<void> {
    const { tasks, store, signal, api } = this.ctx;
    await tasks.run(async () => {
      const local = localDevice(this.ctx);
      const identity = newPrivateKey();
      const registrationId = randomInt(1, 16381);
      for (const kind of ["ec", "signed", "kyber"] as const)
        for (const k of store.listPreKeys(kind)) store.removePreKey(kind, k.id);
      store.setValue("kyberLastResortIds", "[]");
      store.setValue("senderCertificate", "");
      store.setValue("ownDevices", JSON.stringify([local.deviceId]));
      store.setLocal({ ...local, identityPrivateKey: identity, registrationId });
      signal.forgetAllSessions();
      // Contacts know the old key and refuse a sealed message whose certificate names another (a server could mint
      // one): the first message to each goes authenticated, and their reply carries their access key again.
      for (const [key] of store.valuesWithPrefix("accessKey:")) store.setValue(key, "");
      await api.resetIdentity({
        registrationId,
        identityKey: b64(publicKeyBytesOf(identity)),
        signedPreKey: newSignedPreKey(store, identity),
        pqLastResortPreKey: newKyberPreKey(store, identity, true),
      });
    });
  }
}
