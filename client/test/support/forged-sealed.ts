/**
 * What a homeserver's operator can mint with the keys on its disk: a sender
 * certificate for any account id, around a message from a made-up identity.
 * The lying-server and federation tests check that clients refuse it.
 */
import {
  ContentHint,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  type ServerCertificate,
  UnidentifiedSenderMessageContent,
  processPreKeyBundle,
  sealedSenderEncrypt,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import type { OutgoingMessage, PreKeyBundleResponse } from "@zimchat/protocol";
import { MemoryDeviceStore, encodeContent } from "../../src/index.js";
import { preKeyBundleOf } from "../../src/signal/backend.js";
import { signalStores } from "../../src/store/signal-stores.js";
import { trustOnFirstUse } from "../../src/trust.js";

const bytes = (b64: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(b64, "base64"));

/**
 * A new-session (PreKey) message to the first device of `bundle` (the
 * account `targetUuid`), from a made-up identity key, under a sender
 * certificate naming `claimedUuid` (device 1) signed by `serverKey` with
 * `serverCertificate`; sealed, as a send carries it.
 */
export async function forgedSealedPreKeyMessage(options: {
  claimedUuid: string;
  targetUuid: string;
  bundle: PreKeyBundleResponse;
  text: string;
  serverCertificate: ServerCertificate;
  serverKey: PrivateKey;
}): Promise<OutgoingMessage> {
  const { claimedUuid, targetUuid, bundle, text, serverCertificate, serverKey } = options;
  const fake = PrivateKey.generate();
  const store = new MemoryDeviceStore();
  store.setLocal({
    uuid: claimedUuid,
    deviceId: 1,
    username: "impostor",
    password: "x",
    serverUrl: "http://127.0.0.1:1",
    identityPrivateKey: fake.serialize(),
    registrationId: 4242,
    nextPreKeyId: 1,
    accessKey: "",
  });
  const s = signalStores(store, trustOnFirstUse, () => {});
  const d = bundle.devices[0]!;
  const to = ProtocolAddress.new(targetUuid, d.deviceId);
  const me = ProtocolAddress.new(claimedUuid, 1);
  const pre = preKeyBundleOf(PublicKey.deserialize(bytes(bundle.identityKey)), d);
  await processPreKeyBundle(pre, to, me, s.sessions, s.identities);
  const message = await signalEncrypt(
    encodeContent({ v: 1, timestamp: Date.now(), text }),
    to,
    me,
    s.sessions,
    s.identities,
  );
  const certificate = SenderCertificate.new(
    claimedUuid,
    null,
    1,
    fake.getPublicKey(),
    Date.now() + 3_600_000,
    serverCertificate,
    serverKey,
  );
  const usmc = UnidentifiedSenderMessageContent.new(message, certificate, ContentHint.Default, null);
  const sealed = await sealedSenderEncrypt(usmc, to, s.identities);
  return {
    type: "sealed",
    destinationDeviceId: d.deviceId,
    destinationRegistrationId: d.registrationId,
    content: Buffer.from(sealed).toString("base64"),
  };
}
