import { sign, verify } from "node:crypto";
import canonicalize from "canonicalize";
import type { ServerDocument } from "@zimchat/protocol";
import {
  keyIdOf,
  loadIdentityKey,
  loadSigningKeys,
  publicKeyFromRaw,
  type IdentityKey,
  type SigningKey,
} from "./signing-keys.js";

/** The document is signed again after this long (or when its key rotates), not per request. */
const reissueMs = 60_000;
/** Peers fetch the document again within a day. */
const documentLifetimeMs = 86_400_000;

/**
 * This server's signed federation document (`GET /.well-known/zimchat/server`):
 * its name, its long-term identity key, its rotating request-signing keys
 * and its sealed-sender trust root, signed by the identity key over the
 * RFC 8785 canonical JSON of the rest (so the identity key certifies the
 * rotating keys).
 */
export class ServerDocumentService {
  private issued: { document: ServerDocument; at: number } | null = null;
  private identityKey: IdentityKey | null = null;

  constructor(
    private readonly dataDir: string,
    private readonly serverName: string,
    /** The trust root, serialized and base64. */
    private readonly trustRoot: () => string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The request-signing keys, newest (the one that signs requests) first. Creates the current key when missing. */
  keys(): SigningKey[] {
    return loadSigningKeys(this.dataDir, this.now());
  }

  /** The long-term identity key that signs the document (created when missing, then kept in memory). */
  identity(): IdentityKey {
    this.identityKey ??= loadIdentityKey(this.dataDir);
    return this.identityKey;
  }

  /**
   * Loads (or creates) the identity key and the request-signing keys now.
   * @throws KeyFileError for a key file others may read, or one that is not an Ed25519 private key
   */
  loadKeys(): void {
    this.identity();
    this.keys();
  }

  /** The signed document, re-signed at most once a minute. */
  document(): ServerDocument {
    const now = this.now();
    if (this.issued && now - this.issued.at < reissueMs && this.issued.document.validUntil > now) {
      return this.issued.document;
    }
    const keys = this.keys();
    const identity = this.identity();
    const unsigned: Omit<ServerDocument, "signature"> = {
      server: this.serverName,
      identityKey: Buffer.from(identity.publicKey).toString("base64"),
      keys: keys.map((k) => ({
        id: k.id,
        alg: "ed25519" as const,
        publicKey: Buffer.from(k.publicKey).toString("base64"),
        validUntil: k.validUntil,
      })),
      trustRoot: this.trustRoot(),
      validUntil: Math.min(now + documentLifetimeMs, keys[0]!.validUntil),
    };
    const sig = sign(null, Buffer.from(canonicalize(unsigned)!), identity.privateKey);
    const document: ServerDocument = { ...unsigned, signature: { keyId: identity.id, sig: sig.toString("base64") } };
    this.issued = { document, at: now };
    return document;
  }
}

/**
 * Checks a server document's signature against its own `identityKey`
 * (named by `signature.keyId`), and that the document has not expired at
 * `now`. Whether that identity key is the one a peer expects (a pin) is the
 * caller's check.
 * @returns whether the document is signed as it says and still valid
 */
export function verifyServerDocument(document: ServerDocument, now = Date.now()): boolean {
  const { signature, ...unsigned } = document;
  if (document.validUntil <= now) return false;
  const raw = Buffer.from(document.identityKey, "base64");
  if (keyIdOf(raw) !== signature.keyId) return false;
  return verify(
    null,
    Buffer.from(canonicalize(unsigned)!),
    publicKeyFromRaw(raw),
    Buffer.from(signature.sig, "base64"),
  );
}
