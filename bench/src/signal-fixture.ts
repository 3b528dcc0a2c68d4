/**
 * Real libsignal material for the bench: one set of account keys reused by
 * every bench account, and one genuine Whisper (SignalMessage) ciphertext
 * reused for every send, so the client harness spends no time on crypto.
 */
import {
  CiphertextMessageType,
  Direction,
  IdentityChange,
  IdentityKeyStore,
  KEMKeyPair,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SessionRecord,
  SessionStore,
  SignalMessage,
  SignedPreKeyRecord,
  SignedPreKeyStore,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import type { RegisterRequest } from "@zimchat/protocol";

/** The key fields of a registration, shared by every bench account. */
export type AccountKeys = Pick<RegisterRequest, "identityKey" | "signedPreKey" | "pqLastResortPreKey">;

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/**
 * One identity key, one signed pre-key and one Kyber last-resort key. The
 * server checks each signature against the account's own identity key, so one
 * set serves every bench account.
 */
export function createAccountKeys(): AccountKeys {
  const identity = PrivateKey.generate();
  const signedPreKey = PrivateKey.generate().getPublicKey().serialize();
  const kyberKey = KEMKeyPair.generate().getPublicKey().serialize();
  return {
    identityKey: b64(identity.getPublicKey().serialize()),
    signedPreKey: { keyId: 1, publicKey: b64(signedPreKey), signature: b64(identity.sign(signedPreKey)) },
    pqLastResortPreKey: { keyId: 1, publicKey: b64(kyberKey), signature: b64(identity.sign(kyberKey)) },
  };
}

/** A Whisper message and what went into it. */
export interface WhisperFixture {
  /** The serialized SignalMessage (CiphertextMessageType.Whisper). */
  ciphertext: Uint8Array;
  plaintextBytes: number;
}

/**
 * Establishes a PQXDH session between two in-memory parties (Alice sends the
 * PreKey message, Bob decrypts it) and returns Bob's reply, a Whisper
 * message, with the plaintext sized so the ciphertext is at most about
 * `targetBytes` (AES-CBC pads to 16-byte blocks). The reply is decrypted by
 * Alice as a check.
 */
export async function createWhisperFixture(targetBytes: number): Promise<WhisperFixture> {
  const alice = new MemoryParty("a11ce000-0000-4000-8000-000000000001", 1111);
  const bob = new MemoryParty("b0b00000-0000-4000-8000-000000000002", 2222);
  await processPreKeyBundle(bob.bundle(), bob.address, alice.address, alice.sessions, alice.identity);
  const first = await signalEncrypt(new Uint8Array(32), bob.address, alice.address, alice.sessions, alice.identity);
  if (first.type() !== CiphertextMessageType.PreKey) throw new Error(`expected a PreKey message, got type ${first.type()}`);
  await signalDecryptPreKey(
    PreKeySignalMessage.deserialize(first.serialize()),
    alice.address,
    bob.address,
    bob.sessions,
    bob.identity,
    bob.preKeys,
    bob.signedPreKeys,
    bob.kyberPreKeys,
  );

  const encrypt = async (size: number): Promise<Uint8Array> => {
    const message = await signalEncrypt(new Uint8Array(size).fill(0x5a), alice.address, bob.address, bob.sessions, bob.identity);
    if (message.type() !== CiphertextMessageType.Whisper) throw new Error(`expected a Whisper message, got type ${message.type()}`);
    return message.serialize();
  };
  // Overhead is constant apart from block padding: measure it once, then size the plaintext.
  const probePlaintext = 160;
  const overhead = (await encrypt(probePlaintext)).length - probePlaintext;
  let plaintextBytes = Math.max(1, Math.floor((targetBytes - overhead) / 16) * 16 + 15);
  let ciphertext = await encrypt(plaintextBytes);
  while (ciphertext.length > targetBytes && plaintextBytes > 16) {
    plaintextBytes -= 16;
    ciphertext = await encrypt(plaintextBytes);
  }
  const message = SignalMessage.deserialize(ciphertext as Uint8Array<ArrayBuffer>);
  await signalDecrypt(message, bob.address, alice.address, alice.sessions, alice.identity);
  return { ciphertext, plaintextBytes };
}

/** One party's stores, all in memory, with one signed pre-key and one Kyber pre-key. */
export class MemoryParty {
  readonly address: ProtocolAddress;
  readonly sessions = new MemorySessionStore();
  readonly identity: MemoryIdentityStore;
  readonly preKeys = new MemoryPreKeyStore();
  readonly signedPreKeys = new MemorySignedPreKeyStore();
  readonly kyberPreKeys = new MemoryKyberPreKeyStore();
  private readonly identityKey = PrivateKey.generate();
  private readonly signedPreKey: SignedPreKeyRecord;
  private readonly kyberPreKey: KyberPreKeyRecord;

  constructor(
    name: string,
    private readonly registrationId: number,
  ) {
    this.address = ProtocolAddress.new(name, 1);
    this.identity = new MemoryIdentityStore(this.identityKey, registrationId);
    const ec = PrivateKey.generate();
    const ecPublic = ec.getPublicKey();
    this.signedPreKey = SignedPreKeyRecord.new(1, Date.now(), ecPublic, ec, this.identityKey.sign(ecPublic.serialize()));
    this.signedPreKeys.records.set(1, this.signedPreKey);
    const kem = KEMKeyPair.generate();
    this.kyberPreKey = KyberPreKeyRecord.new(1, Date.now(), kem, this.identityKey.sign(kem.getPublicKey().serialize()));
    this.kyberPreKeys.records.set(1, this.kyberPreKey);
  }

  bundle(): PreKeyBundle {
    return PreKeyBundle.new(
      this.registrationId,
      1,
      null,
      null,
      this.signedPreKey.id(),
      this.signedPreKey.publicKey(),
      this.signedPreKey.signature(),
      this.identityKey.getPublicKey(),
      this.kyberPreKey.id(),
      this.kyberPreKey.publicKey(),
      this.kyberPreKey.signature(),
    );
  }
}

class MemorySessionStore extends SessionStore {
  private readonly records = new Map<string, Uint8Array<ArrayBuffer>>();
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

class MemoryIdentityStore extends IdentityKeyStore {
  private readonly known = new Map<string, PublicKey>();
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
    return previous !== undefined && !previous.equals(key) ? IdentityChange.ReplacedExisting : IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity(name: ProtocolAddress, key: PublicKey, _direction: Direction): Promise<boolean> {
    const known = this.known.get(name.name());
    return known === undefined || known.equals(key);
  }
  async getIdentity(name: ProtocolAddress): Promise<PublicKey | null> {
    return this.known.get(name.name()) ?? null;
  }
}

class MemoryPreKeyStore extends PreKeyStore {
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

class MemorySignedPreKeyStore extends SignedPreKeyStore {
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

class MemoryKyberPreKeyStore extends KyberPreKeyStore {
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
