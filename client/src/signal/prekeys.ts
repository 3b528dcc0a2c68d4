/**
 * Pre-key generation with libsignal: signed EC pre-keys, Kyber pre-keys
 * (one-time and last-resort), one-time EC pre-keys, all stored in the device
 * store and returned as the server wants them.
 */
import {
  KEMKeyPair,
  KyberPreKeyRecord,
  PreKeyRecord,
  PrivateKey,
  SignedPreKeyRecord,
} from "@signalapp/libsignal-client";
import type { SignedEcPreKey, SignedKyberPreKey, EcPreKey, UploadKeysRequest } from "@zimchat/protocol";
import type { DeviceStore } from "../store/device-store.js";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/** Ids of Kyber last-resort keys this device still holds (current and in grace). */
export function lastResortKyberIds(store: DeviceStore): number[] {
  return JSON.parse(store.getValue("kyberLastResortIds") ?? "[]") as number[];
}

function nextId(store: DeviceStore): number {
  const local = store.getLocal();
  if (!local) throw new Error("this device is not registered");
  const id = local.nextPreKeyId;
  store.setLocal({ ...local, nextPreKeyId: id + 1 >= 0x7fffffff ? 1 : id + 1 });
  return id;
}

/** A new signed EC pre-key, stored, as the server wants it. */
export function newSignedPreKey(store: DeviceStore, identityKey: Uint8Array<ArrayBuffer>): SignedEcPreKey {
  const identity = PrivateKey.deserialize(identityKey);
  const id = nextId(store);
  const priv = PrivateKey.generate();
  const signature = identity.sign(priv.getPublicKey().serialize());
  store.savePreKey("signed", {
    id,
    record: SignedPreKeyRecord.new(id, Date.now(), priv.getPublicKey(), priv, signature).serialize(),
    createdAt: Date.now(),
  });
  store.setValue("signedPreKeyId", String(id));
  store.setValue("signedPreKeyRotatedAt", String(Date.now()));
  return { keyId: id, publicKey: b64(priv.getPublicKey().serialize()), signature: b64(signature) };
}

/** A new signed Kyber pre-key, stored. `lastResort` marks it as the current last-resort key. */
export function newKyberPreKey(
  store: DeviceStore,
  identityKey: Uint8Array<ArrayBuffer>,
  lastResort: boolean,
): SignedKyberPreKey {
  const identity = PrivateKey.deserialize(identityKey);
  const id = nextId(store);
  const pair = KEMKeyPair.generate();
  const signature = identity.sign(pair.getPublicKey().serialize());
  store.savePreKey("kyber", {
    id,
    record: KyberPreKeyRecord.new(id, Date.now(), pair, signature).serialize(),
    createdAt: Date.now(),
  });
  if (lastResort) store.setValue("kyberLastResortIds", JSON.stringify([...lastResortKyberIds(store), id]));
  return { keyId: id, publicKey: b64(pair.getPublicKey().serialize()), signature: b64(signature) };
}

/** New one-time keys of both kinds, stored, as an upload body. */
export function newOneTimeKeys(
  store: DeviceStore,
  identityKey: Uint8Array<ArrayBuffer>,
  ec: number,
  pq: number,
): UploadKeysRequest {
  const preKeys: EcPreKey[] = [];
  for (let i = 0; i < ec; i++) {
    const id = nextId(store);
    const priv = PrivateKey.generate();
    store.savePreKey("ec", {
      id,
      record: PreKeyRecord.new(id, priv.getPublicKey(), priv).serialize(),
      createdAt: Date.now(),
    });
    preKeys.push({ keyId: id, publicKey: b64(priv.getPublicKey().serialize()) });
  }
  const pqPreKeys = Array.from({ length: pq }, () => newKyberPreKey(store, identityKey, false));
  return { preKeys, pqPreKeys };
}

/**
 * Drops replaced signed and last-resort keys older than the grace period.
 * The current ones are always kept.
 */
export function pruneReplacedKeys(store: DeviceStore, graceMs: number, now = Date.now()): void {
  const currentSigned = Number(store.getValue("signedPreKeyId"));
  for (const k of store.listPreKeys("signed"))
    if (k.id !== currentSigned && now - k.createdAt > graceMs) store.removePreKey("signed", k.id);
  const lastResort = lastResortKyberIds(store);
  const current = lastResort.at(-1);
  const kept = lastResort.filter((id) => {
    const k = store.getPreKey("kyber", id);
    if (id === current || (k && now - k.createdAt <= graceMs)) return true;
    store.removePreKey("kyber", id);
    return false;
  });
  store.setValue("kyberLastResortIds", JSON.stringify(kept));
}
