/**
 * What an attacker can do with a stolen copy of a device store: run
 * libsignal directly on its sessions and keys (no de-duplication, no
 * policy in the way). Sealed envelopes are unsealed with the stolen
 * identity key first.
 */
import {
  CiphertextMessageType,
  PreKeySignalMessage,
  ProtocolAddress,
  SignalMessage,
  sealedSenderDecryptToUsmc,
  signalDecrypt,
  signalDecryptPreKey,
} from "@signalapp/libsignal-client";
import type { Envelope } from "@zimchat/protocol";
import { decodeContent, type DeviceStore } from "../../src/index.js";
import { signalStores } from "../../src/store/signal-stores.js";
import { trustOnFirstUse } from "../../src/trust.js";

/** Decrypts an envelope with the stolen store, or returns null when libsignal cannot. */
export async function attackerDecrypt(stolen: DeviceStore, envelope: Envelope): Promise<string | null> {
  const s = signalStores(stolen, trustOnFirstUse, () => {});
  const local = stolen.getLocal()!;
  const me = ProtocolAddress.new(local.uuid, local.deviceId);
  let content = new Uint8Array(Buffer.from(envelope.content, "base64")) as Uint8Array<ArrayBuffer>;
  try {
    let type = envelope.type === "prekey" ? CiphertextMessageType.PreKey : CiphertextMessageType.Whisper;
    let from: ProtocolAddress;
    if (envelope.type === "sealed") {
      const usmc = await sealedSenderDecryptToUsmc(content, s.identities);
      from = ProtocolAddress.new(usmc.senderCertificate().senderUuid(), usmc.senderCertificate().senderDeviceId());
      type = usmc.msgType();
      content = usmc.contents();
    } else {
      from = ProtocolAddress.new(envelope.sourceUuid!, envelope.sourceDeviceId!);
    }
    const plaintext =
      type === CiphertextMessageType.PreKey
        ? await signalDecryptPreKey(
            PreKeySignalMessage.deserialize(content),
            from,
            me,
            s.sessions,
            s.identities,
            s.preKeys,
            s.signedPreKeys,
            s.kyberPreKeys,
          )
        : await signalDecrypt(SignalMessage.deserialize(content), from, me, s.sessions, s.identities);
    return decodeContent(plaintext).text ?? "";
  } catch {
    return null;
  }
}
