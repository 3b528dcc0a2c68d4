import {
  Direction,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyRecord,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderKeyRecord,
  SenderKeyStore,
  SessionRecord,
  SessionStore,
  SignedPreKeyRecord,
  SignedPreKeyStore,
} from "@signalapp/libsignal-client";
import type { TrustPolicy } from "../trust.js";
import type { DeviceStore } from "../store/device-store.js";
import { lastResortKyberIds } from "./prekeys.js";

/** Called when a peer's stored identity key is replaced by a different one (`previous` is the key it replaced). */
export type IdentityChangeListener = (uuid: string, blocked: boolean, previous: Uint8Array) => void;

/** libsignal's protocol stores, backed by a {@link DeviceStore}. */
export interface SignalStores {
  sessions: SessionStore;
  identities: IdentityKeyStore;
  preKeys: PreKeyStore;
  signedPreKeys: SignedPreKeyStore;
  kyberPreKeys: KyberPreKeyStore;
  senderKeys: SenderKeyStore;
}

const key = (address: ProtocolAddress): string => `${address.name()}.${address.deviceId()}`;

/**
 * Deserializes through a memo keyed by the stored byte array itself: a store
 * hands back the same array until the record changes (a write stores a new
 * one; a rollback or reload reads a new one), so an unchanged record is not
 * parsed again. The objects are libsignal's immutable handles (libsignal
 * copies a record it is given before changing it, and saves a new one).
 */
function memoized<T extends object>(
  deserialize: (bytes: Uint8Array<ArrayBuffer>) => T,
): { get(bytes: Uint8Array<ArrayBuffer>): T; remember(bytes: Uint8Array<ArrayBuffer>, value: T): void } {
  const parsed = new WeakMap<Uint8Array, T>();
  return {
    get(bytes) {
      let value = parsed.get(bytes);
      if (!value) {
        value = deserialize(bytes);
        parsed.set(bytes, value);
      }
      return value;
    },
    remember(bytes, value) {
      parsed.set(bytes, value);
    },
  };
}

/** Builds libsignal's stores over a device store. */
export function signalStores(
  store: DeviceStore,
  policy: TrustPolicy,
  onIdentityChange: IdentityChangeListener,
): SignalStores {
  const local = (): NonNullable<ReturnType<DeviceStore["getLocal"]>> => {
    const l = store.getLocal();
    if (!l) throw new Error("this device is not registered");
    return l;
  };

  const sessionRecords = memoized((bytes) => SessionRecord.deserialize(bytes));
  const privateKeys = memoized((bytes) => PrivateKey.deserialize(bytes));
  // libsignal asks for the pair on every sealed-sender seal and unseal and every PreKey message; its default derives
  // the public key (a scalar multiplication) each time.
  const keyPairs = memoized((bytes) => {
    const privateKey = privateKeys.get(bytes);
    return new IdentityKeyPair(privateKey.getPublicKey(), privateKey);
  });
  const publicKeys = memoized((bytes) => PublicKey.deserialize(bytes));

  class Sessions extends SessionStore {
    async saveSession(address: ProtocolAddress, record: SessionRecord): Promise<void> {
      // Serialized by the store when it writes it (once per commit for a store that holds writes until then).
      if (store.saveSessionRecord) return store.saveSessionRecord(key(address), record);
      const bytes = record.serialize();
      store.saveSession(key(address), bytes);
      sessionRecords.remember(bytes, record);
    }
    async getSession(address: ProtocolAddress): Promise<SessionRecord | null> {
      const stored = store.getSessionRecord ? store.getSessionRecord(key(address)) : store.getSession(key(address));
      if (!stored) return null;
      return stored instanceof Uint8Array ? sessionRecords.get(stored) : (stored as SessionRecord);
    }
    async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
      return Promise.all(
        addresses.map(async (a) => {
          const s = await this.getSession(a);
          if (!s) throw new Error(`no session for ${key(a)}`);
          return s;
        }),
      );
    }
  }

  class Identities extends IdentityKeyStore {
    async getIdentityKey(): Promise<PrivateKey> {
      return privateKeys.get(local().identityPrivateKey);
    }
    override async getIdentityKeyPair(): Promise<IdentityKeyPair> {
      return keyPairs.get(local().identityPrivateKey);
    }
    async getLocalRegistrationId(): Promise<number> {
      return local().registrationId;
    }
    async saveIdentity(address: ProtocolAddress, publicKey: PublicKey): Promise<IdentityChange> {
      const uuid = address.name();
      const serialized = publicKey.serialize();
      const known = store.getIdentity(uuid);
      if (!known) {
        store.saveIdentity({ uuid, publicKey: serialized, verified: false, blocked: false, firstSeen: Date.now() });
        return IdentityChange.NewOrUnchanged;
      }
      if (Buffer.from(known.publicKey).equals(Buffer.from(serialized))) return IdentityChange.NewOrUnchanged;
      // A changed key: a verified contact becomes blocked for sending until re-verified or accepted (and stays blocked
      // if the key changes again before that).
      const blocked = known.verified || known.blocked;
      store.saveIdentity({ uuid, publicKey: serialized, verified: false, blocked, firstSeen: Date.now() });
      onIdentityChange(uuid, blocked, known.publicKey);
      return IdentityChange.ReplacedExisting;
    }
    async isTrustedIdentity(address: ProtocolAddress, publicKey: PublicKey, direction: Direction): Promise<boolean> {
      return policy.isTrusted(
        store.getIdentity(address.name()),
        publicKey.serialize(),
        direction === Direction.Sending ? "sending" : "receiving",
      );
    }
    async getIdentity(address: ProtocolAddress): Promise<PublicKey | null> {
      const known = store.getIdentity(address.name());
      return known ? publicKeys.get(known.publicKey) : null;
    }
  }

  const missing = (kind: string, id: number): Error =>
    Object.assign(new Error(`no ${kind} pre-key ${id}`), { code: "missing_pre_key" });

  class PreKeys extends PreKeyStore {
    async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
      store.savePreKey("ec", { id, record: record.serialize(), createdAt: Date.now() });
    }
    async getPreKey(id: number): Promise<PreKeyRecord> {
      const k = store.getPreKey("ec", id);
      if (!k) throw missing("one-time", id);
      return PreKeyRecord.deserialize(k.record);
    }
    async removePreKey(id: number): Promise<void> {
      store.removePreKey("ec", id);
    }
  }

  class SignedPreKeys extends SignedPreKeyStore {
    async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
      store.savePreKey("signed", { id, record: record.serialize(), createdAt: Date.now() });
    }
    async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
      const k = store.getPreKey("signed", id);
      if (!k) throw missing("signed", id);
      return SignedPreKeyRecord.deserialize(k.record);
    }
  }

  class KyberPreKeys extends KyberPreKeyStore {
    async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
      store.savePreKey("kyber", { id, record: record.serialize(), createdAt: Date.now() });
    }
    async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
      const k = store.getPreKey("kyber", id);
      if (!k) throw missing("Kyber", id);
      return KyberPreKeyRecord.deserialize(k.record);
    }
    async markKyberPreKeyUsed(id: number): Promise<void> {
      // One-time Kyber keys are deleted once used; the last-resort key stays.
      if (!lastResortKyberIds(store).includes(id)) store.removePreKey("kyber", id);
    }
  }

  /** Sender keys (groups), one record per sender device and distribution id, in the store's values. */
  class SenderKeys extends SenderKeyStore {
    async saveSenderKey(sender: ProtocolAddress, distributionId: string, record: SenderKeyRecord): Promise<void> {
      store.setValue(`senderKey:${key(sender)}:${distributionId}`, Buffer.from(record.serialize()).toString("base64"));
    }
    async getSenderKey(sender: ProtocolAddress, distributionId: string): Promise<SenderKeyRecord | null> {
      const value = store.getValue(`senderKey:${key(sender)}:${distributionId}`);
      return value
        ? SenderKeyRecord.deserialize(new Uint8Array(Buffer.from(value, "base64")) as Uint8Array<ArrayBuffer>)
        : null;
    }
  }

  return {
    senderKeys: new SenderKeys(),
    sessions: new Sessions(),
    identities: new Identities(),
    preKeys: new PreKeys(),
    signedPreKeys: new SignedPreKeys(),
    kyberPreKeys: new KyberPreKeys(),
  };
}
