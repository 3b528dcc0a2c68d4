/**
 * The Signal backend: every protocol operation of the client, done by
 * libsignal over the device store (sessions with PQXDH and the Double
 * Ratchet, sealed sender, sender keys). The modules above it hand it bytes
 * and account ids and get bytes back; none of them touches libsignal.
 */
import {
  CiphertextMessageType,
  ContentHint,
  ErrorCode,
  KEMPublicKey,
  LibSignalErrorBase,
  PreKeyBundle,
  PreKeySignalMessage,
  ProtocolAddress,
  PublicKey,
  SenderKeyDistributionMessage,
  SignalMessage,
  UnidentifiedSenderMessageContent,
  groupDecrypt,
  groupEncrypt,
  processPreKeyBundle,
  processSenderKeyDistributionMessage,
  sealedSenderDecryptToUsmc,
  sealedSenderEncrypt,
  sealedSenderMultiRecipientEncrypt,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
  type CiphertextMessage,
  type SenderCertificate,
} from "@signalapp/libsignal-client";
import type { Envelope, OutgoingMessage, PreKeyBundleResponse } from "@zimchat/protocol";
import { DecryptionFailureReason, decryptionFailure } from "../errors.js";
import { refusedIdentityChange } from "../identity-changes.js";
import type { DeviceStore } from "../store/device-store.js";
import type { TrustPolicy } from "../trust.js";
import { publicKeyBytesOf } from "./keys.js";
import { signalStores, type IdentityChangeListener, type SignalStores } from "./stores.js";

const b64 = (bytes: Uint8Array<ArrayBuffer>): string => Buffer.from(bytes).toString("base64");
const bytes = (s: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;
const addressKey = (uuid: string, deviceId: number): string => `${uuid}.${deviceId}`;

/** A session-encrypted message for one device, not yet sealed or serialized. */
export type Ciphertext = CiphertextMessage;

/** One device of an account. */
export interface DeviceAddress {
  uuid: string;
  deviceId: number;
}

/** A decrypted envelope: its sender (from the envelope, or a sealed message's validated certificate) and plaintext. */
export interface OpenedEnvelope {
  from: string;
  fromDevice: number;
  plaintext: Uint8Array;
  sealed: boolean;
  /** It was a sender-key (group) message. */
  senderKey: boolean;
}

/** One device's keys from a pre-key bundle. */
export type BundleDevice = PreKeyBundleResponse["devices"][number];

/** libsignal for one device store: sessions, sealed sender and sender keys. */
export class SignalBackend {
  private readonly stores: SignalStores;
  /** Peer devices' registration ids, read from their sessions (sessions only change through this backend). */
  private readonly registrationIds = new Map<string, number>();

  constructor(
    private readonly store: DeviceStore,
    policy: TrustPolicy,
    onIdentityChange: IdentityChangeListener,
  ) {
    this.stores = signalStores(store, policy, onIdentityChange);
  }

  /** Certificates libsignal validated (trust root and certificate, base64) and their expiration. */
  private readonly validCertificates = new Map<string, number>();

  /** Addresses made so far (they are immutable), so a message does not make new ones for the same devices. */
  private readonly addresses = new Map<string, ProtocolAddress>();

  private me(): ProtocolAddress {
    const local = this.store.getLocal()!;
    return this.address(local.uuid, local.deviceId);
  }

  private address(uuid: string, deviceId: number): ProtocolAddress {
    const key = addressKey(uuid, deviceId);
    let address = this.addresses.get(key);
    if (!address) {
      if (this.addresses.size >= 1000) this.addresses.clear();
      address = ProtocolAddress.new(uuid, deviceId);
      this.addresses.set(key, address);
    }
    return address;
  }

  /** The last identity public key derived (a scalar multiplication), with the private key it came from. */
  private ownKey: { privateKey: Uint8Array; publicKey: Uint8Array<ArrayBuffer> } | null = null;

  /** This device's identity public key, serialized. */
  identityKey(): Uint8Array<ArrayBuffer> {
    const privateKey = this.store.getLocal()!.identityPrivateKey;
    if (this.ownKey?.privateKey !== privateKey) this.ownKey = { privateKey, publicKey: publicKeyBytesOf(privateKey) };
    return this.ownKey.publicKey;
  }

  // ------------------------------------------------------------ sessions

  /** Parses a bundle's identity key. @returns it serialized @throws when it is not a public key */
  bundleIdentityKey(bundle: PreKeyBundleResponse): Uint8Array<ArrayBuffer> {
    return PublicKey.deserialize(bytes(bundle.identityKey)).serialize();
  }

  /**
   * Which of a bundle device's signed keys the account identity key did not sign, if any (libsignal's signature check).
   */
  unsignedDeviceKey(identityKey: Uint8Array<ArrayBuffer>, d: BundleDevice): "signed_pre_key" | "kyber_pre_key" | null {
    const key = PublicKey.deserialize(identityKey);
    if (!key.verify(bytes(d.signedPreKey.publicKey), bytes(d.signedPreKey.signature))) return "signed_pre_key";
    if (!key.verify(bytes(d.pqPreKey.publicKey), bytes(d.pqPreKey.signature))) return "kyber_pre_key";
    return null;
  }

  /**
   * Starts a session (PQXDH) with one device from its bundle keys. The
   * identity key is recorded first (with any change); a key the trust
   * policy blocks stays recorded and the session is refused.
   */
  async startSession(uuid: string, identityKeyBytes: Uint8Array<ArrayBuffer>, d: BundleDevice): Promise<void> {
    const identityKey = PublicKey.deserialize(identityKeyBytes);
    const pre = preKeyBundleOf(identityKey, d);
    const address = this.address(uuid, d.deviceId);
    // Record the key (and any change) before libsignal checks trust.
    await this.stores.identities.saveIdentity(address, identityKey);
    // Refused, but the new key stays recorded (pending, blocked) for safetyNumber and verify.
    if (this.store.getIdentity(uuid)?.blocked) throw refusedIdentityChange(this.store, uuid);
    await processPreKeyBundle(pre, address, this.me(), this.stores.sessions, this.stores.identities);
    this.registrationIds.set(addressKey(uuid, d.deviceId), d.registrationId);
  }

  /** Forgets the session with one device. */
  forgetSession(uuid: string, deviceId: number): void {
    this.store.deleteSession(addressKey(uuid, deviceId));
    this.registrationIds.delete(addressKey(uuid, deviceId));
  }

  /** Forgets every session (a new identity key). */
  forgetAllSessions(): void {
    this.store.clearSessions();
    this.registrationIds.clear();
  }

  /**
   * Encrypts padded content over the session with one device. @throws libsignal's errors ({@link isUntrustedIdentity})
   */
  async encrypt(padded: Uint8Array<ArrayBuffer>, to: DeviceAddress): Promise<Ciphertext> {
    return signalEncrypt(
      padded,
      this.address(to.uuid, to.deviceId),
      this.me(),
      this.stores.sessions,
      this.stores.identities,
    );
  }

  /** The identity key each certificate in use names (serialized), read once per certificate object. */
  private readonly certificateKeys = new WeakMap<SenderCertificate, Buffer>();

  /** Whether a certificate names this device's current identity key (one fetched before `resetIdentity` does not). */
  certificateIsCurrent(certificate: SenderCertificate): boolean {
    let key = this.certificateKeys.get(certificate);
    if (!key) {
      key = Buffer.from(certificate.key().serialize());
      this.certificateKeys.set(certificate, key);
    }
    return key.equals(this.identityKey());
  }

  /**
   * The wire message for one device: sealed with `certificate` when given, else the plain PreKey or Whisper message.
   */
  async outgoing(
    message: Ciphertext,
    to: DeviceAddress,
    certificate: SenderCertificate | null,
  ): Promise<OutgoingMessage> {
    const address = this.address(to.uuid, to.deviceId);
    const registrationId = await this.remoteRegistrationId(address);
    if (certificate) {
      const usmc = UnidentifiedSenderMessageContent.new(message, certificate, ContentHint.Default, null);
      const sealed = await sealedSenderEncrypt(usmc, address, this.stores.identities);
      return {
        type: "sealed",
        destinationDeviceId: to.deviceId,
        destinationRegistrationId: registrationId,
        content: b64(sealed),
      };
    }
    return {
      type: message.type() === CiphertextMessageType.PreKey ? "prekey" : "whisper",
      destinationDeviceId: to.deviceId,
      destinationRegistrationId: registrationId,
      content: b64(message.serialize()),
    };
  }

  /** A peer device's registration id, from its session (cached). */
  private async remoteRegistrationId(address: ProtocolAddress): Promise<number> {
    const key = addressKey(address.name(), address.deviceId());
    let id = this.registrationIds.get(key);
    if (id === undefined) {
      id = (await this.stores.sessions.getSession(address))?.remoteRegistrationId() ?? 0;
      this.registrationIds.set(key, id);
    }
    return id;
  }

  // ---------------------------------------------------------- decrypting

  /**
   * Decrypts an envelope: a sealed one is unsealed first, its certificate
   * validated against `trustRoot` (serialized), and its sender read from it.
   * `checkSender` sees the sender's account id before anything is decrypted
   * and may refuse it by throwing.
   * @throws an error with a `reason` ({@link decryptionFailureReason})
   */
  async open(
    envelope: Envelope,
    trustRoot: Uint8Array<ArrayBuffer> | null,
    checkSender: (from: string) => void = () => undefined,
  ): Promise<OpenedEnvelope> {
    const s = this.stores;
    const me = this.me();
    if (envelope.type !== "sealed") {
      const from = envelope.sourceUuid;
      const fromDevice = envelope.sourceDeviceId;
      if (!from || !fromDevice) throw decryptionFailure(DecryptionFailureReason.UnknownSender, "no sender");
      checkSender(from);
      const address = this.address(from, fromDevice);
      const plaintext =
        envelope.type === "prekey"
          ? await this.decryptPreKey(PreKeySignalMessage.deserialize(bytes(envelope.content)), address, me)
          : await signalDecrypt(
              SignalMessage.deserialize(bytes(envelope.content)),
              address,
              me,
              s.sessions,
              s.identities,
            );
      return { from, fromDevice, plaintext, sealed: false, senderKey: false };
    }
    const usmc = await sealedSenderDecryptToUsmc(bytes(envelope.content), s.identities);
    const certificate = usmc.senderCertificate();
    if (!trustRoot || !this.certificateValid(certificate, trustRoot, Date.now())) {
      throw decryptionFailure(DecryptionFailureReason.InvalidCertificate, "sender certificate not valid");
    }
    const from = certificate.senderUuid();
    const fromDevice = certificate.senderDeviceId();
    checkSender(from);
    const address = this.address(from, fromDevice);
    // Read before decrypting: a PreKey message saves the key it carries, which is the certificate's when the server
    // minted both.
    const knownBefore = this.store.getIdentity(from);
    let plaintext: Uint8Array;
    const type = usmc.msgType();
    switch (type) {
      case CiphertextMessageType.PreKey:
        plaintext = await this.decryptPreKey(PreKeySignalMessage.deserialize(usmc.contents()), address, me);
        break;
      case CiphertextMessageType.Whisper:
        plaintext = await signalDecrypt(
          SignalMessage.deserialize(usmc.contents()),
          address,
          me,
          s.sessions,
          s.identities,
        );
        break;
      case CiphertextMessageType.SenderKey:
        plaintext = await groupDecrypt(address, s.senderKeys, usmc.contents());
        break;
      default:
        throw decryptionFailure(DecryptionFailureReason.InvalidMessage, `unexpected sealed message type ${type}`);
    }
    // The certificate must name the key this device knew for the sender (a server could mint one for another key);
    // for a sender never seen, the key their first message carries, as for an unsealed first message.
    const certificateKey = Buffer.from(certificate.key().serialize());
    if (knownBefore && !certificateKey.equals(Buffer.from(knownBefore.publicKey))) {
      throw Object.assign(
        decryptionFailure(
          DecryptionFailureReason.CertificateKeyMismatch,
          "the certificate names another key than the one known for its sender",
        ),
        { from },
      );
    }
    const known = this.store.getIdentity(from);
    if (!known || !certificateKey.equals(Buffer.from(known.publicKey))) {
      throw decryptionFailure(
        DecryptionFailureReason.InvalidCertificate,
        "the certificate's key is not the sender's identity key",
      );
    }
    return { from, fromDevice, plaintext, sealed: true, senderKey: type === CiphertextMessageType.SenderKey };
  }

  /**
   * libsignal's `validate` of a sender certificate against a trust root, remembered: a sender's every sealed message
   * carries the same certificate (for a day), and its two signature checks depend on its bytes and the root only. What
   * changes with time is expiry: a remembered certificate is valid until its expiration, as `validate` says.
   */
  private certificateValid(certificate: SenderCertificate, trustRoot: Uint8Array<ArrayBuffer>, now: number): boolean {
    const key = `${b64(trustRoot)} ${b64(certificate.serialize())}`;
    const expiration = this.validCertificates.get(key);
    if (expiration !== undefined) return now <= expiration;
    if (!certificate.validate(PublicKey.deserialize(trustRoot), now)) return false;
    if (this.validCertificates.size >= 1000) this.validCertificates.clear();
    this.validCertificates.set(key, certificate.expiration());
    return true;
  }

  private async decryptPreKey(
    message: PreKeySignalMessage,
    address: ProtocolAddress,
    me: ProtocolAddress,
  ): Promise<Uint8Array> {
    const s = this.stores;
    // A PreKey message may replace the session, and with it the peer's registration id.
    this.registrationIds.delete(addressKey(address.name(), address.deviceId()));
    return signalDecryptPreKey(
      message,
      address,
      me,
      s.sessions,
      s.identities,
      s.preKeys,
      s.signedPreKeys,
      s.kyberPreKeys,
    );
  }

  // --------------------------------------------------------- sender keys

  /** This device's sender-key distribution message for a distribution id (base64). */
  async senderKeyDistribution(distributionId: string): Promise<string> {
    const message = await SenderKeyDistributionMessage.create(this.me(), distributionId, this.stores.senderKeys);
    return b64(message.serialize());
  }

  /** Stores a sender's sender key from their distribution message (base64). */
  async processSenderKeyDistribution(from: DeviceAddress, message: string): Promise<void> {
    const distribution = SenderKeyDistributionMessage.deserialize(bytes(message));
    await processSenderKeyDistributionMessage(
      this.address(from.uuid, from.deviceId),
      distribution,
      this.stores.senderKeys,
    );
  }

  /**
   * One sender-key ciphertext (`groupEncrypt`) inside one multi-recipient
   * sealed-sender message for every recipient device.
   */
  async groupSeal(
    padded: Uint8Array<ArrayBuffer>,
    distributionId: string,
    groupId: Uint8Array<ArrayBuffer>,
    certificate: SenderCertificate,
    recipients: DeviceAddress[],
  ): Promise<Uint8Array> {
    const ciphertext = await groupEncrypt(this.me(), distributionId, this.stores.senderKeys, padded);
    const usmc = UnidentifiedSenderMessageContent.new(ciphertext, certificate, ContentHint.Default, groupId);
    const addresses = recipients.map((r) => this.address(r.uuid, r.deviceId));
    return sealedSenderMultiRecipientEncrypt({
      content: usmc,
      recipients: addresses,
      identityStore: this.stores.identities,
      sessionStore: this.stores.sessions,
    });
  }
}

/** libsignal's pre-key bundle of one device, from the keys a server handed out for it. */
export function preKeyBundleOf(identityKey: PublicKey, d: BundleDevice): PreKeyBundle {
  return PreKeyBundle.new(
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
}

/** Whether libsignal refused a peer's identity key. */
export function isUntrustedIdentity(error: unknown): boolean {
  return error instanceof LibSignalErrorBase && error.code === ErrorCode.UntrustedIdentity;
}

/** Why an envelope could not be decrypted: the reason an error carries, or libsignal's error code mapped. */
export function decryptionFailureReason(error: unknown): DecryptionFailureReason {
  const explicit = (error as { reason?: DecryptionFailureReason }).reason;
  if (explicit) return explicit;
  if ((error as { code?: unknown }).code === "missing_pre_key") return DecryptionFailureReason.MissingPreKey;
  if (error instanceof LibSignalErrorBase) {
    switch (error.code) {
      case ErrorCode.DuplicatedMessage:
        return DecryptionFailureReason.Duplicate;
      case ErrorCode.UntrustedIdentity:
        return DecryptionFailureReason.UntrustedIdentity;
      case ErrorCode.InvalidSession:
        return DecryptionFailureReason.NoSession;
      case ErrorCode.InvalidSenderKeySession:
        return DecryptionFailureReason.NoSenderKey;
      default:
        return DecryptionFailureReason.InvalidMessage;
    }
  }
  return DecryptionFailureReason.InvalidMessage;
}
