import { sign, verify } from "node:crypto";
import canonicalize from "canonicalize";
import type { ServerDocument } from "@zimchat/protocol";
import { keyIdOf, loadSigningKeys, publicKeyFromRaw, type SigningKey } from "./signing-keys.js";

/** The document is signed again after this long (or when its key rotates), not per request. */
const reissueMs = 60_000;
/** Peers fetch the document again within a day. */
const documentLifetimeMs = 86_400_000;

/**
 * This server's signed federation document (`GET /.well-known/zimchat/server`):
 * its name, its federation signing keys and its sealed-sender trust root,
 * signed by the newest key over the RFC 8785 canonical JSON of the rest.
 */
export class ServerDocumentService {
  private issued: { document: ServerDocument; at: number } | null = null;

  constructor(
    private readonly dataDir: string,
    private readonly serverName: string,
    /** The trust root, serialized and base64. */
    private readonly trustRoot: () => string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The signing keys, newest (the one that signs) first. Creates the current key when missing. */
  keys(): SigningKey[] {
    return loadSigningKeys(this.dataDir, this.now());
  }

  /** The signed document, re-signed at most once a minute. */
  document(): ServerDocument {
    const now = this.now();
    if (this.issued && now - this.issued.at < reissueMs && this.issued.document.validUntil > now) {
      return this.issued.document;
    }
    const keys = this.keys();
    const signer = keys[0]!;
    const unsigned: Omit<ServerDocument, "signature"> = {
      server: this.serverName,
      keys: keys.map((k) => ({
        id: k.id,
        alg: "ed25519" as const,
        publicKey: Buffer.from(k.publicKey).toString("base64"),
        validUntil: k.validUntil,
      })),
      trustRoot: this.trustRoot(),
      validUntil: Math.min(now + documentLifetimeMs, signer.validUntil),
    };
    const sig = sign(null, Buffer.from(canonicalize(unsigned)!), signer.privateKey);
    const document: ServerDocument = { ...unsigned, signature: { keyId: signer.id, sig: sig.toString("base64") } };
    this.issued = { document, at: now };
    return document;
  }
}

/**
 * Checks a server document's signature against the key it names, which must
 * be one of its own keys and unexpired at `now`.
 * @returns whether the document is signed as it says
 */
export function verifyServerDocument(document: ServerDocument, now = Date.now()): boolean {
  const { signature, ...unsigned } = document;
  const key = document.keys.find((k) => k.id === signature.keyId);
  if (!key || key.validUntil <= now) return false;
  const raw = Buffer.from(key.publicKey, "base64");
  if (keyIdOf(raw) !== key.id) return false;
  return verify(
    null,
    Buffer.from(canonicalize(unsigned)!),
    publicKeyFromRaw(raw),
    Buffer.from(signature.sig, "base64"),
  );
}
