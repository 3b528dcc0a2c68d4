/**
 * A real libsignal device for tests that speak the wire protocol themselves
 * (no client SDK): in-memory protocol stores, key generation, and
 * encrypt/decrypt through libsignal. It makes genuine registration bodies,
 * key uploads and ciphertexts, so a server is exercised with what real
 * clients send.
 */
import {
  KEMKeyPair,
  KyberPreKeyRecord,
  PreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  KEMPublicKey,
  SignalMessage,
  SignedPreKeyRecord,
  CiphertextMessageType,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import { randomBytes, randomInt } from "node:crypto";
import {
  ContentHint,
  SenderCertificate,
  SenderKeyDistributionMessage,
  UnidentifiedSenderMessageContent,
  groupDecrypt,
  groupEncrypt,
  processSenderKeyDistributionMessage,
  sealedSenderDecryptMessage,
  sealedSenderDecryptToUsmc,
  sealedSenderEncryptMessage,
  sealedSenderMultiRecipientEncrypt,
} from "@signalapp/libsignal-client";
import type { PreKeyBundleResponse, RegisterRequest, UploadKeysRequest, EnvelopeType } from "@zimchat/protocol";
import {
  MemoryIdentityStore,
  MemoryKyberPreKeyStore,
  MemoryPreKeyStore,
  MemorySenderKeyStore,
  MemorySessionStore,
  MemorySignedPreKeyStore,
} from "./signal-stores.js";

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const bytes = (s: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;

/** What a sealed-sender decryption reveals to the recipient. */
export interface SealedOpened {
  senderUuid: string;
  senderDeviceId: number;
  plaintext: string;
}

/** A test device with real libsignal keys and stores. */
export class SignalDevice {
  /** Sender keys (groups), by sender address and distribution id. */
  readonly senderKeys = new MemorySenderKeyStore();
  readonly identity: PrivateKey;
  readonly registrationId = randomInt(1, 16381);
  readonly password = randomBytes(24).toString("base64url");
  readonly sessions = new MemorySessionStore();
  readonly identities: MemoryIdentityStore;
  readonly preKeys = new MemoryPreKeyStore();
  readonly signedPreKeys = new MemorySignedPreKeyStore();
  readonly kyberPreKeys = new MemoryKyberPreKeyStore();
  /** Set after registration. */
  uuid = "";
  deviceId = 1;
  private nextKeyId = 1;

  /** @param identity the account's identity key, for a linked device (a new one otherwise) */
  constructor(identity: PrivateKey = PrivateKey.generate()) {
    this.identity = identity;
    this.identities = new MemoryIdentityStore(this.identity, this.registrationId);
  }

  get address(): ProtocolAddress {
    return ProtocolAddress.new(this.uuid, this.deviceId);
  }

  /** HTTP Basic credentials. */
  get authHeader(): string {
    return `Basic ${Buffer.from(`${this.uuid}.${this.deviceId}:${this.password}`).toString("base64")}`;
  }

  /** Socket.IO handshake credentials. */
  get socketAuth(): { username: string; password: string } {
    return { username: `${this.uuid}.${this.deviceId}`, password: this.password };
  }

  /** A new signed EC pre-key, kept in the store. */
  signedPreKey(): { keyId: number; publicKey: string; signature: string } {
    const keyId = this.nextKeyId++;
    const priv = PrivateKey.generate();
    const pub = priv.getPublicKey();
    const signature = this.identity.sign(pub.serialize());
    this.signedPreKeys.records.set(keyId, SignedPreKeyRecord.new(keyId, Date.now(), pub, priv, signature));
    return { keyId, publicKey: b64(pub.serialize()), signature: b64(signature) };
  }

  /** A new signed Kyber pre-key, kept in the store. */
  kyberPreKey(): { keyId: number; publicKey: string; signature: string } {
    const keyId = this.nextKeyId++;
    const pair = KEMKeyPair.generate();
    const signature = this.identity.sign(pair.getPublicKey().serialize());
    this.kyberPreKeys.records.set(keyId, KyberPreKeyRecord.new(keyId, Date.now(), pair, signature));
    return { keyId, publicKey: b64(pair.getPublicKey().serialize()), signature: b64(signature) };
  }

  /** A new one-time EC pre-key, kept in the store. */
  ecPreKey(): { keyId: number; publicKey: string } {
    const keyId = this.nextKeyId++;
    const priv = PrivateKey.generate();
    this.preKeys.records.set(keyId, PreKeyRecord.new(keyId, priv.getPublicKey(), priv));
    return { keyId, publicKey: b64(priv.getPublicKey().serialize()) };
  }

  /** A registration body for this device. */
  registration(username: string, inviteToken?: string): RegisterRequest {
    const body: RegisterRequest = {
      username,
      password: this.password,
      registrationId: this.registrationId,
      identityKey: b64(this.identity.getPublicKey().serialize()),
      signedPreKey: this.signedPreKey(),
      pqLastResortPreKey: this.kyberPreKey(),
    };
    if (inviteToken !== undefined) body.inviteToken = inviteToken;
    return body;
  }

  /** A key upload with `ec` one-time EC keys and `pq` one-time Kyber keys. */
  keyUpload(ec: number, pq: number): UploadKeysRequest {
    return {
      preKeys: Array.from({ length: ec }, () => this.ecPreKey()),
      pqPreKeys: Array.from({ length: pq }, () => this.kyberPreKey()),
    };
  }

  /** Starts a session with every device in a bundle the server handed out. */
  async processBundle(uuid: string, bundle: PreKeyBundleResponse): Promise<void> {
    const identityKey = PublicKey.deserialize(bytes(bundle.identityKey));
    for (const d of bundle.devices) {
      const pre = PreKeyBundle.new(
        d.registrationId,
        d.deviceId,
        d.preKey?.keyId ?? null,
        d.preKey ? PublicKey.deserialize(bytes(d.preKey.publicKey)) : null,
        d.signedPreKey.keyId,
        PublicKey.deserialize(bytes(d.signedPreKey.publicKey)),
        bytes(d.signedPreKey.signature),
        identityKey,
        d.pqPreKey.keyId,
        KEMPublicKey.deserialize(bytes(d.pqPreKey.publicKey)),
        bytes(d.pqPreKey.signature),
      );
      await processPreKeyBundle(
        pre,
        ProtocolAddress.new(uuid, d.deviceId),
        this.address,
        this.sessions,
        this.identities,
      );
    }
  }

  /** Encrypts for one device of a peer with an established session. */
  async encrypt(uuid: string, deviceId: number, plaintext: string): Promise<{ type: EnvelopeType; content: string }> {
    const message = await signalEncrypt(
      Buffer.from(plaintext),
      ProtocolAddress.new(uuid, deviceId),
      this.address,
      this.sessions,
      this.identities,
    );
    const type: EnvelopeType = message.type() === CiphertextMessageType.PreKey ? "prekey" : "whisper";
    return { type, content: b64(message.serialize()) };
  }

  /** Decrypts an envelope's content from a peer device. */
  async decrypt(uuid: string, deviceId: number, type: EnvelopeType, content: string): Promise<string> {
    const from = ProtocolAddress.new(uuid, deviceId);
    const plaintext =
      type === "prekey"
        ? await signalDecryptPreKey(
            PreKeySignalMessage.deserialize(bytes(content)),
            from,
            this.address,
            this.sessions,
            this.identities,
            this.preKeys,
            this.signedPreKeys,
            this.kyberPreKeys,
          )
        : await signalDecrypt(
            SignalMessage.deserialize(bytes(content)),
            from,
            this.address,
            this.sessions,
            this.identities,
          );
    return Buffer.from(plaintext).toString("utf8");
  }

  // Sealed sender.

  /** Seals a message for one device of a peer (an established session) under a sender certificate. */
  async sealedEncrypt(
    uuid: string,
    deviceId: number,
    plaintext: string,
    certificate: SenderCertificate,
  ): Promise<{ type: EnvelopeType; content: string }> {
    const sealed = await sealedSenderEncryptMessage(
      Buffer.from(plaintext),
      ProtocolAddress.new(uuid, deviceId),
      certificate,
      this.sessions,
      this.identities,
    );
    return { type: "sealed", content: b64(sealed) };
  }

  /** Opens a sealed 1:1 message: libsignal checks the sender certificate against `trustRoot`. */
  async sealedDecrypt(content: string, trustRoot: PublicKey): Promise<SealedOpened> {
    const result = await sealedSenderDecryptMessage(
      bytes(content),
      trustRoot,
      Date.now(),
      null,
      this.uuid,
      this.deviceId,
      this.sessions,
      this.identities,
      this.preKeys,
      this.signedPreKeys,
      this.kyberPreKeys,
    );
    return {
      senderUuid: result.senderUuid(),
      senderDeviceId: result.deviceId(),
      plaintext: Buffer.from(result.message()).toString("utf8"),
    };
  }

  /** A serialized sender-key distribution message for this device's sender key in a group. */
  async senderKeyDistribution(distributionId: string): Promise<Uint8Array<ArrayBuffer>> {
    return (await SenderKeyDistributionMessage.create(this.address, distributionId, this.senderKeys)).serialize();
  }

  /** Stores a group member's sender key from its distribution message. */
  async processSenderKeyDistribution(
    senderUuid: string,
    senderDeviceId: number,
    message: Uint8Array<ArrayBuffer>,
  ): Promise<void> {
    await processSenderKeyDistributionMessage(
      ProtocolAddress.new(senderUuid, senderDeviceId),
      SenderKeyDistributionMessage.deserialize(message),
      this.senderKeys,
    );
  }

  /**
   * One sealed-sender multi-recipient message for every listed device (all
   * with established sessions): the plaintext encrypted once with this
   * device's sender key, sealed under the certificate.
   */
  async sealedMultiEncrypt(
    recipients: ProtocolAddress[],
    distributionId: string,
    plaintext: string,
    certificate: SenderCertificate,
  ): Promise<Uint8Array<ArrayBuffer>> {
    // Creates the sender key on first use (a no-op when it exists).
    await SenderKeyDistributionMessage.create(this.address, distributionId, this.senderKeys);
    const ciphertext = await groupEncrypt(this.address, distributionId, this.senderKeys, Buffer.from(plaintext));
    const content = UnidentifiedSenderMessageContent.new(ciphertext, certificate, ContentHint.Default, null);
    return sealedSenderMultiRecipientEncrypt(content, recipients, this.identities, this.sessions);
  }

  /**
   * Opens a sealed group message: unseal, check the certificate against `trustRoot`, then decrypt with the sender's
   * key.
   */
  async sealedGroupDecrypt(content: string, trustRoot: PublicKey): Promise<SealedOpened> {
    const usmc = await sealedSenderDecryptToUsmc(bytes(content), this.identities);
    const certificate = usmc.senderCertificate();
    if (!certificate.validate(trustRoot, Date.now()))
      throw new Error("sender certificate does not validate against the trust root");
    const sender = ProtocolAddress.new(certificate.senderUuid(), certificate.senderDeviceId());
    const plaintext = await groupDecrypt(sender, this.senderKeys, usmc.contents());
    return {
      senderUuid: certificate.senderUuid(),
      senderDeviceId: certificate.senderDeviceId(),
      plaintext: Buffer.from(plaintext).toString("utf8"),
    };
  }
}
