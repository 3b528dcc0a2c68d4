/**
 * Device linking: the new device shows a link URI (text and QR) holding the
 * homeserver, the server's one-time linking code and the new device's
 * ephemeral public key. The primary device seals the account's identity key
 * pair and what else a device needs to that key (libsignal's
 * `PublicKey.seal`, HPKE) and attaches it to the code on the server, which
 * relays ciphertext it cannot read.
 */
import {
  openSealed,
  publicKeyBytes,
  publicKeyFromBytes,
  sealTo,
  type PrivateKey,
  type PublicKey,
} from "./signal/keys.js";
import { limits, linkCodeSchema } from "@zimchat/protocol";
import { z } from "zod";

/** Domain separation for the sealed provisioning message. */
const provisioningInfo = "ZimChat device link v1";

/** What the primary device hands a new device of the same account. */
export const provisioningMessageSchema = z.object({
  uuid: z.string().uuid(),
  username: z.string().max(32),
  /** Serialized libsignal PrivateKey of the account identity (base64). */
  identityPrivateKey: z.string().max(128),
  /** The account's unidentified access key (base64). */
  accessKey: z.string().max(64),
  /** The trust root the primary pinned (base64), so the new device pins the same. */
  trustRoot: z.string().max(128).optional(),
});
export type ProvisioningMessage = z.infer<typeof provisioningMessageSchema>;

/** What a link URI carries. */
export interface LinkRequest {
  serverUrl: string;
  code: string;
  /** The new device's ephemeral public key. */
  publicKey: PublicKey;
}

/** The link URI a new device shows: `zimchat-link:?server=…&code=…&key=…`. */
export function linkUri(request: LinkRequest): string {
  const params = new URLSearchParams({
    server: request.serverUrl,
    code: request.code,
    key: Buffer.from(publicKeyBytes(request.publicKey)).toString("base64url"),
  });
  return `zimchat-link:?${params.toString()}`;
}

/** Thrown for a link URI that is not one. */
export class InvalidLinkUriError extends Error {
  override name = "InvalidLinkUriError";
}

/** Parses a link URI (as typed or scanned). @throws InvalidLinkUriError */
export function parseLinkUri(uri: string): LinkRequest {
  const trimmed = uri.trim();
  if (trimmed.length > 512 || !trimmed.startsWith("zimchat-link:?"))
    throw new InvalidLinkUriError("not a zimchat-link: URI");
  const params = new URLSearchParams(trimmed.slice("zimchat-link:?".length));
  const serverUrl = params.get("server");
  const code = linkCodeSchema.safeParse(params.get("code"));
  const key = params.get("key");
  if (!serverUrl || !/^https?:\/\//.test(serverUrl) || !code.success || !key)
    throw new InvalidLinkUriError("the link URI lacks its server, code or key");
  let publicKey: PublicKey;
  try {
    publicKey = publicKeyFromBytes(new Uint8Array(Buffer.from(key, "base64url")) as Uint8Array<ArrayBuffer>);
  } catch (error) {
    throw new InvalidLinkUriError("the link URI's key is not a public key", { cause: error });
  }
  return { serverUrl, code: code.data, publicKey };
}

/** Seals a provisioning message to the new device's ephemeral key. */
export function sealProvisioning(to: PublicKey, message: ProvisioningMessage, code: string): Uint8Array<ArrayBuffer> {
  // The code as associated data binds the ciphertext to this link.
  return sealTo(
    to,
    new Uint8Array(Buffer.from(JSON.stringify(message))) as Uint8Array<ArrayBuffer>,
    provisioningInfo,
    aad(code),
  );
}

/** Opens a provisioning message with the ephemeral private key. @throws when it does not open or parse */
export function openProvisioning(key: PrivateKey, sealed: Uint8Array<ArrayBuffer>, code: string): ProvisioningMessage {
  if (sealed.length > limits.maxProvisioningMessageBytes) throw new Error("provisioning message too large");
  const plaintext = openSealed(key, sealed, provisioningInfo, aad(code));
  return provisioningMessageSchema.parse(JSON.parse(Buffer.from(plaintext).toString("utf8")));
}

function aad(code: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(code)) as Uint8Array<ArrayBuffer>;
}
