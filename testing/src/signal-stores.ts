/**
 * libsignal's protocol stores, all in memory: what a test device, the bench's
 * fixtures, or a bot author's test needs to run real libsignal operations
 * without a database. Records are kept as libsignal returns them (sessions
 * and sender keys serialized, as a persistent store would keep them).
 */
import {
  Direction,
  IdentityChange,
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
  type Uuid,
} from "@signalapp/libsignal-client";

/** Sessions by address (`name.deviceId`). */
export class MemorySessionStore extends SessionStore {
  readonly records = new Map<string, Uint8Array<ArrayBuffer>>();
  async saveSession(name: ProtocolAddress, record: SessionRecord): Promise<void> {
    this.records.set(name.toString(), record.serialize());
  }
  async getSession(name: ProtocolAddress): Promise<SessionRecord | null> {
    const bytes = this.records.get(name.toString());
    return bytes === undefined ? null : SessionRecord.deserialize(bytes);
  }
  async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    return addresses.map((address) => {
      const bytes = this.records.get(address.toString());
      if (bytes === undefined) throw new Error(`no session for ${address.toString()}`);
      return SessionRecord.deserialize(bytes);
    });
  }
}

/** This device's identity key and registration id, and the peers' identity keys (trust on first use). */
export class MemoryIdentityStore extends IdentityKeyStore {
  /** Peers' identity keys, by account (address name). */
  readonly known = new Map<string, PublicKey>();
  constructor(
    private readonly key: PrivateKey,
    private readonly registrationId: number,
  ) {
    super();
  }
  async getIdentityKey(): Promise<PrivateKey> {
    return this.key;
  }
  async getLocalRegistrationId(): Promise<number> {
    return this.registrationId;
  }
  async saveIdentity(name: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const previous = this.known.get(name.name());
    this.known.set(name.name(), key);
    return previous !== undefined && !previous.equals(key)
      ? IdentityChange.ReplacedExisting
      : IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity(name: ProtocolAddress, key: PublicKey, _direction: Direction): Promise<boolean> {
    const known = this.known.get(name.name());
    return known === undefined || known.equals(key);
  }
  async getIdentity(name: ProtocolAddress): Promise<PublicKey | null> {
    return this.known.get(name.name()) ?? null;
  }
}

/** One-time EC pre-keys, by id (removed once used). */
export class MemoryPreKeyStore extends PreKeyStore {
  readonly records = new Map<number, PreKeyRecord>();
  async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    this.records.set(id, record);
  }
  async getPreKey(id: number): Promise<PreKeyRecord> {
    const record = this.records.get(id);
    if (record === undefined) throw new Error(`no pre-key ${id}`);
    return record;
  }
  async removePreKey(id: number): Promise<void> {
    this.records.delete(id);
  }
}

/** Signed EC pre-keys, by id. */
export class MemorySignedPreKeyStore extends SignedPreKeyStore {
  readonly records = new Map<number, SignedPreKeyRecord>();
  async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    this.records.set(id, record);
  }
  async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    const record = this.records.get(id);
    if (record === undefined) throw new Error(`no signed pre-key ${id}`);
    return record;
  }
}

/** Kyber pre-keys (one-time and last-resort), by id; kept after use. */
export class MemoryKyberPreKeyStore extends KyberPreKeyStore {
  readonly records = new Map<number, KyberPreKeyRecord>();
  async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    this.records.set(id, record);
  }
  async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    const record = this.records.get(id);
    if (record === undefined) throw new Error(`no Kyber pre-key ${id}`);
    return record;
  }
  async markKyberPreKeyUsed(): Promise<void> {}
}

/** Sender keys (groups), by sender address and distribution id. */
export class MemorySenderKeyStore extends SenderKeyStore {
  readonly records = new Map<string, Uint8Array<ArrayBuffer>>();
  async saveSenderKey(sender: ProtocolAddress, distributionId: Uuid, record: SenderKeyRecord): Promise<void> {
    this.records.set(`${sender.toString()}/${distributionId}`, record.serialize());
  }
  async getSenderKey(sender: ProtocolAddress, distributionId: Uuid): Promise<SenderKeyRecord | null> {
    const bytes = this.records.get(`${sender.toString()}/${distributionId}`);
    return bytes === undefined ? null : SenderKeyRecord.deserialize(bytes);
  }
}
