/**
 * Key transparency: the wire format of the `key-transparency` server plugin
 * (an append-only Merkle log of every account identity key the homeserver
 * publishes) and the Merkle math both ends need.
 *
 * The tree is RFC 6962 / RFC 9162's (§2.1) with SHA-256: a leaf hash is
 * `SHA-256(0x00 || leaf)`, an interior node `SHA-256(0x01 || left || right)`,
 * the empty tree's root `SHA-256("")`. Verification follows RFC 9162
 * §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by step. Tree heads
 * are signed by the log's own libsignal key (XEd25519); signing and
 * verifying happen where libsignal is (the plugin and the client): this
 * module only says which bytes are signed.
 *
 * Tree sizes and indices are JavaScript numbers, exact up to 2^53 - 1; the
 * bit operations of the RFC are written as arithmetic so they stay exact
 * above 2^31.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { limits } from "./limits.js";
import { base64Bytes, ecPublicKeySchema, signatureSchema, uuidSchema } from "./primitives.js";

/** Limits of the key-transparency wire format. Every decoder enforces them. */
export const keyTransparencyLimits = {
  /** Bytes of a hash (SHA-256). */
  hashBytes: 32,
  /** Hashes in one inclusion or consistency proof (a proof for a tree of 2^53 leaves needs at most 54). */
  maxProofHashes: 64,
  /** The largest tree size (and leaf index + 1) the format describes. */
  maxTreeSize: Number.MAX_SAFE_INTEGER,
} as const;

/** Domain-separation prefix of a leaf's bytes (version 1). */
const leafPrefix = Buffer.from("zimchat key transparency leaf\u0000\u0001", "latin1");
/** Domain-separation prefix of a signed tree head's payload (version 1). */
const treeHeadPrefix = Buffer.from("zimchat key transparency tree head\u0000\u0001", "latin1");

const hashSchema = base64Bytes(keyTransparencyLimits.hashBytes);
const treeSizeSchema = z.number().int().min(0).max(keyTransparencyLimits.maxTreeSize);
const timeSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).describe("ms since the epoch");

/** One entry of the log: an account's identity key, as the homeserver published it at `time`. */
export const keyLogLeafSchema = z
  .strictObject({
    accountId: uuidSchema,
    identityKey: ecPublicKeySchema.describe("Serialized libsignal PublicKey (base64)"),
    time: timeSchema.describe(
      "When the key was published: ms since the epoch, the start of its day (UTC) as the plugin logs it",
    ),
  })
  .meta({ id: "KeyLogLeaf" });
export type KeyLogLeaf = z.infer<typeof keyLogLeafSchema>;

/** A tree head signed by the log's key: the log had `treeSize` leaves whose root is `rootHash` at `timestamp`. */
export const signedTreeHeadSchema = z
  .strictObject({
    treeSize: treeSizeSchema,
    rootHash: hashSchema,
    timestamp: timeSchema,
    signature: signatureSchema.describe("XEd25519 signature by the log key over treeHeadPayload(...)"),
  })
  .meta({ id: "SignedTreeHead" });
export type SignedTreeHead = z.infer<typeof signedTreeHeadSchema>;

/** A proof's hashes, base64, at most {@link keyTransparencyLimits.maxProofHashes}. */
export const proofHashesSchema = z.array(hashSchema).max(keyTransparencyLimits.maxProofHashes);

/** An inclusion proof (RFC 9162 §2.1.3): the audit path of leaf `leafIndex` in the tree of `treeSize` leaves. */
export const inclusionProofSchema = z
  .strictObject({
    leafIndex: treeSizeSchema,
    treeSize: treeSizeSchema,
    hashes: proofHashesSchema,
  })
  .refine((p) => p.leafIndex < p.treeSize, "leafIndex must be below treeSize")
  .meta({ id: "InclusionProof" });
export type InclusionProof = z.infer<typeof inclusionProofSchema>;

/** A consistency proof (RFC 9162 §2.1.4): the tree of `fromSize` leaves is a prefix of the tree of `toSize` leaves. */
export const consistencyProofSchema = z
  .strictObject({
    fromSize: treeSizeSchema,
    toSize: treeSizeSchema,
    hashes: proofHashesSchema,
  })
  .refine((p) => p.fromSize <= p.toSize, "fromSize must not exceed toSize")
  .meta({ id: "ConsistencyProof" });
export type ConsistencyProof = z.infer<typeof consistencyProofSchema>;

/** `GET /plugins/key-transparency/v1/head`: the latest signed tree head and the log's public key. */
export const keyLogHeadResponseSchema = z
  .strictObject({
    head: signedTreeHeadSchema,
    publicKey: ecPublicKeySchema.describe("The log's libsignal PublicKey (base64): clients pin it"),
  })
  .meta({ id: "KeyLogHeadResponse" });
export type KeyLogHeadResponse = z.infer<typeof keyLogHeadResponseSchema>;

/** `GET /plugins/key-transparency/v1/inclusion`: a leaf, its proof against `head`, and `head`. */
export const keyLogInclusionResponseSchema = z
  .strictObject({
    leafIndex: treeSizeSchema,
    leaf: keyLogLeafSchema,
    proof: inclusionProofSchema,
    head: signedTreeHeadSchema,
  })
  .refine(
    (r) => r.proof.leafIndex === r.leafIndex && r.proof.treeSize === r.head.treeSize,
    "the proof must be for leafIndex against head",
  )
  .meta({ id: "KeyLogInclusionResponse" });
export type KeyLogInclusionResponse = z.infer<typeof keyLogInclusionResponseSchema>;

/** `GET /plugins/key-transparency/v1/consistency`: a consistency proof between two tree sizes. */
export const keyLogConsistencyResponseSchema = z
  .strictObject({ proof: consistencyProofSchema })
  .meta({ id: "KeyLogConsistencyResponse" });
export type KeyLogConsistencyResponse = z.infer<typeof keyLogConsistencyResponseSchema>;

/** Query of `GET /v1/inclusion`: by account and key, or by leaf index. Values are URL-encoded (base64 `+` as `%2B`). */
export const keyLogInclusionQuerySchema = z.union([
  z.strictObject({ accountId: uuidSchema, identityKey: ecPublicKeySchema }),
  z.strictObject({
    index: z
      .string()
      .regex(/^(0|[1-9][0-9]{0,15})$/, "must be a decimal leaf index")
      .transform(Number)
      .pipe(treeSizeSchema),
  }),
]);

const sizeParam = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,15})$/, "must be a decimal tree size")
  .transform(Number)
  .pipe(treeSizeSchema);

/** Query of `GET /v1/consistency`: `from` and `to` tree sizes, `from <= to`. */
export const keyLogConsistencyQuerySchema = z
  .strictObject({ from: sizeParam, to: sizeParam })
  .refine((q) => q.from <= q.to, { message: "from must not exceed to", path: ["from"] });

// ------------------------------------------------------------------ bytes

function u64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}

/**
 * The exact bytes of a leaf: the version-1 prefix, the account UUID's 16
 * bytes, the 33-byte serialized identity key, and the time as a big-endian
 * uint64 of milliseconds. Every field has a fixed length, so the encoding is
 * unambiguous.
 * @throws Error for a leaf that does not match {@link keyLogLeafSchema}
 */
export function leafBytes(leaf: KeyLogLeaf): Uint8Array<ArrayBuffer> {
  const parsed = keyLogLeafSchema.parse(leaf);
  const uuid = Buffer.from(parsed.accountId.replaceAll("-", ""), "hex");
  const key = Buffer.from(parsed.identityKey, "base64");
  if (uuid.length !== 16 || key.length !== limits.ecPublicKeyBytes)
    throw new Error("leaf fields have the wrong length");
  return new Uint8Array(Buffer.concat([leafPrefix, uuid, key, u64(parsed.time)]));
}

/**
 * The bytes the log key signs for a tree head: the version-1 prefix, the
 * tree size (uint64 BE), the 32-byte root hash and the timestamp (uint64 BE
 * ms).
 */
export function treeHeadPayload(
  head: Pick<SignedTreeHead, "treeSize" | "rootHash" | "timestamp">,
): Uint8Array<ArrayBuffer> {
  const root = Buffer.from(head.rootHash, "base64");
  if (root.length !== keyTransparencyLimits.hashBytes) throw new Error("rootHash must be 32 bytes");
  treeSizeSchema.parse(head.treeSize);
  timeSchema.parse(head.timestamp);
  return new Uint8Array(Buffer.concat([treeHeadPrefix, u64(head.treeSize), root, u64(head.timestamp)]));
}

// ------------------------------------------------------------ Merkle math

/** SHA-256 of the empty string: the root of the empty tree. */
export function emptyRoot(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(createHash("sha256").digest());
}

/** RFC 9162 leaf hash: `SHA-256(0x00 || leaf)`. */
export function leafHash(leaf: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(createHash("sha256").update(Uint8Array.of(0)).update(leaf).digest());
}

/** RFC 9162 interior node hash: `SHA-256(0x01 || left || right)`. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(createHash("sha256").update(Uint8Array.of(1)).update(left).update(right).digest());
}

/**
 * The Merkle tree hash (root) of leaves given by their leaf hashes, in
 * O(n) hashes and O(log n) memory: a stack of complete subtrees, merged as
 * they fill, then folded right to left (which is the RFC's split at the
 * largest power of two below n).
 */
export function merkleRoot(leafHashes: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (!leafHashes.length) return emptyRoot();
  const stack: { hash: Uint8Array<ArrayBuffer>; size: number }[] = [];
  for (const leaf of leafHashes) {
    const hash = new Uint8Array(leaf);
    let node = { hash, size: 1 };
    while (stack.length && stack[stack.length - 1]!.size === node.size) {
      const left = stack.pop()!;
      node = { hash: nodeHash(left.hash, node.hash), size: node.size * 2 };
    }
    stack.push(node);
  }
  let root: Uint8Array<ArrayBuffer> = stack.pop()!.hash;
  while (stack.length) root = nodeHash(stack.pop()!.hash, root);
  return root;
}

const isOdd = (n: number): boolean => n % 2 === 1;
const half = (n: number): number => Math.floor(n / 2);
const isPowerOfTwo = (n: number): boolean => {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
};
const equal = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

/**
 * Verifies an inclusion proof, RFC 9162 §2.1.3.2.
 * @param leafHashValue the leaf's hash ({@link leafHash} of its bytes)
 * @returns whether `proof` shows the leaf at `leafIndex` in the tree of `treeSize` leaves with root `rootHash`
 */
export function verifyInclusion(
  leafHashValue: Uint8Array,
  leafIndex: number,
  treeSize: number,
  proof: readonly Uint8Array[],
  rootHash: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(leafIndex) || !Number.isSafeInteger(treeSize) || leafIndex < 0) return false;
  if (proof.length > keyTransparencyLimits.maxProofHashes) return false;
  // 1. leaf_index must be below tree_size.
  if (leafIndex >= treeSize) return false;
  // 2-3.
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leafHashValue;
  // 4.
  for (const p of proof) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  // 5.
  return sn === 0 && equal(r, rootHash);
}

/**
 * Verifies a consistency proof, RFC 9162 §2.1.4.2, for `0 < first < second`.
 * The cases the RFC leaves to the caller are decided here: `first ===
 * second` needs an empty proof and equal roots; `first === 0` (the empty
 * tree is a prefix of every tree) needs an empty proof; `first > second`
 * never verifies.
 * @returns whether the tree of `first` leaves with root `firstHash` is a prefix of the tree of `second` leaves with
 * root `secondHash`
 */
export function verifyConsistency(
  first: number,
  second: number,
  proof: readonly Uint8Array[],
  firstHash: Uint8Array,
  secondHash: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 0 || first > second) return false;
  if (proof.length > keyTransparencyLimits.maxProofHashes) return false;
  if (first === second) return proof.length === 0 && equal(firstHash, secondHash);
  if (first === 0) return proof.length === 0 && equal(firstHash, emptyRoot());
  // 1. An empty path fails.
  if (proof.length === 0) return false;
  // 2. For a power-of-two first tree, the first root is the path's start.
  const path = isPowerOfTwo(first) ? [firstHash, ...proof] : [...proof];
  // 3.
  let fn = first - 1;
  let sn = second - 1;
  // 4.
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  // 5.
  let fr = path[0]!;
  let sr = path[0]!;
  // 6.
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  // 7.
  return equal(fr, firstHash) && equal(sr, secondHash) && sn === 0;
}
