/**
 * Federation test setup: real `zimchat serve` children named after their
 * own loopback address and federating (open, loopback peers allowed), and a
 * sealed-sender message minted with a server's own trust root key (what its
 * operator could do).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PrivateKey, ServerCertificate } from "@signalapp/libsignal-client";
import type { OutgoingMessage, PreKeyBundleResponse } from "@zimchat/protocol";
import type { ZimClient, ZimClientEvents } from "../../src/index.js";
import { forgedSealedPreKeyMessage } from "./forged-sealed.js";
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
  return forgedSealedPreKeyMessage({ claimedUuid, targetUuid, bundle, text, serverCertificate, serverKey });
}
