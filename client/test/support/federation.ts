/**
 * Federation test setup: real `zimchat serve` children named after their
 * own loopback address and federating (open, loopback peers allowed), and a
 * sealed-sender message minted with a server's own trust root key (what its
 * operator could do).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  ContentHint,
  KEMPublicKey,
  PreKeyBundle,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  ServerCertificate,
  UnidentifiedSenderMessageContent,
  processPreKeyBundle,
  sealedSenderEncrypt,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import type { OutgoingMessage, PreKeyBundleResponse } from "@zimchat/protocol";
import { MemoryDeviceStore, encodeContent, type ZimClient, type ZimClientEvents } from "../../src/index.js";
import { signalStores } from "../../src/store/signal-stores.js";
import { trustOnFirstUse } from "../../src/trust.js";
import type { Homeserver } from "@zimchat/testing/spawn";

export { federatedHomeserver, type FederatedHomeserver } from "@zimchat/testing/spawn";

/** Waits until `check` holds (polling), or fails after `timeoutMs`. */
export async function eventually(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`still not true after ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Collects one event's payloads. */
export function collect<K extends keyof ZimClientEvents>(client: ZimClient, event: K): ZimClientEvents[K][0][] {
  const out: ZimClientEvents[K][0][] = [];
  client.on(event, ((payload: ZimClientEvents[K][0]) => out.push(payload)) as never);
  return out;
}

const bytes = (s: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Buffer.from(s, "base64")) as Uint8Array<ArrayBuffer>;

/** A server's sealed-sender trust root (serialized public key, base64), from its data dir. */
export function trustRootOf(server: Homeserver): string {
  return readFileSync(join(server.dataDir, "keys", "trust-root.pub"), "utf8").trim();
}

/**
 * What `signer`'s operator can mint with its trust root's private key: a
 * server certificate of its own, a sender certificate naming `claimedUuid`
 * (device 1, a made-up identity key), around a new-session (PreKey) message
 * to device 1 of `targetUuid` (whose bundle is given), sealed. Returns the
 * message as a send carries it.
 */
export async function mintSealedMessage(
  signer: Homeserver,
  claimedUuid: string,
  targetUuid: string,
  bundle: PreKeyBundleResponse,
  text: string,
): Promise<OutgoingMessage> {
  const trustRoot = PrivateKey.deserialize(
    bytes(readFileSync(join(signer.dataDir, "keys", "trust-root.key"), "utf8").trim()),
  );
  const serverKey = PrivateKey.generate();
  const serverCertificate = ServerCertificate.new(4711, serverKey.getPublicKey(), trustRoot);
  const fake = PrivateKey.generate();
  const store = new MemoryDeviceStore();
  store.setLocal({
    uuid: claimedUuid,
    deviceId: 1,
    username: "impostor",
    password: "x",
    serverUrl: signer.url,
    identityPrivateKey: fake.serialize(),
    registrationId: 4242,
    nextPreKeyId: 1,
    accessKey: "",
  });
  const s = signalStores(store, trustOnFirstUse, () => {});
  const d = bundle.devices[0]!;
  const to = ProtocolAddress.new(targetUuid, d.deviceId);
  const me = ProtocolAddress.new(claimedUuid, 1);
  const pre = PreKeyBundle.new(
    d.registrationId,
    d.deviceId,
    d.preKey?.keyId ?? null,
    d.preKey ? PublicKey.deserialize(bytes(d.preKey.publicKey)) : null,
    d.signedPreKey.keyId,
    PublicKey.deserialize(bytes(d.signedPreKey.publicKey)),
    bytes(d.signedPreKey.signature),
    PublicKey.deserialize(bytes(bundle.identityKey)),
    d.pqPreKey.keyId,
    KEMPublicKey.deserialize(bytes(d.pqPreKey.publicKey)),
    bytes(d.pqPreKey.signature),
  );
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
