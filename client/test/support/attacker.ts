/**
 * What an attacker can do with a stolen copy of a device store: run
 * libsignal directly on its sessions and keys (no de-duplication, no
 * policy in the way).
 */
import { PreKeySignalMessage, ProtocolAddress, SignalMessage, signalDecrypt, signalDecryptPreKey } from "@signalapp/libsignal-client";
import type { Envelope } from "@zimchat/protocol";
import { decodeContent, type DeviceStore } from "../../src/index.js";
import { signalStores } from "../../src/store/signal-stores.js";
import { trustOnFirstUse } from "../../src/trust.js";

/** Decrypts an envelope with the stolen store, or returns null when libsignal cannot. */
export async function attackerDecrypt(stolen: DeviceStore, envelope: Envelope): Promise<string | null> {
  const s = signalStores(stolen, trustOnFirstUse, () => {});
  const local = stolen.getLocal()!;
  const from = ProtocolAddress.new(envelope.sourceUuid!, envelope.sourceDeviceId!);
  const me = ProtocolAddress.new(local.uuid, local.deviceId);
  const content = new Uint8Array(Buffer.from(envelope.content, "base64")) as Uint8Array<ArrayBuffer>;
  try {
    const plaintext =
      envelope.type === "prekey"
        ? await signalDecryptPreKey(PreKeySignalMessage.deserialize(content), from, me, s.sessions, s.identities, s.preKeys, s.signedPreKeys, s.kyberPreKeys)
        : await signalDecrypt(SignalMessage.deserialize(content), from, me, s.sessions, s.identities);
    return decodeContent(plaintext).text ?? "";
  } catch {
    return null;
  }
}
