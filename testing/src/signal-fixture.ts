/**
 * Real libsignal material made once and reused (the bench uses it so its
 * client harness spends no time on crypto): one set of account keys that
 * every account can register with, one genuine Whisper (SignalMessage)
 * ciphertext, and in-memory parties with a session between them.
 */
import {
  CiphertextMessageType,
  KEMKeyPair,
  KyberPreKeyRecord,
  PreKeyBundle,
  PreKeySignalMessage,
  PrivateKey,
  ProtocolAddress,
  SignalMessage,
  SignedPreKeyRecord,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import type { RegisterRequest } from "@zimchat/protocol";
import {
  MemoryIdentityStore,
  MemoryKyberPreKeyStore,
  MemoryPreKeyStore,
  MemorySessionStore,
  MemorySignedPreKeyStore,
} from "./signal-stores.js";

/** The key fields of a registration, which any number of accounts may share. */
export type AccountKeys = Pick<RegisterRequest, "identityKey" | "signedPreKey" | "pqLastResortPreKey">;

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/**
 * One identity key, one signed pre-key and one Kyber last-resort key. The
 * server checks each signature against the account's own identity key, so one
 * set serves any number of accounts.
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
  if (first.type() !== CiphertextMessageType.PreKey)
    throw new Error(`expected a PreKey message, got type ${first.type()}`);
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
    const message = await signalEncrypt(
      new Uint8Array(size).fill(0x5a),
      alice.address,
      bob.address,
      bob.sessions,
      bob.identity,
    );
    if (message.type() !== CiphertextMessageType.Whisper)
      throw new Error(`expected a Whisper message, got type ${message.type()}`);
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
    this.signedPreKey = SignedPreKeyRecord.new(
      1,
      Date.now(),
      ecPublic,
      ec,
      this.identityKey.sign(ecPublic.serialize()),
    );
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
