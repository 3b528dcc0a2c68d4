import { emptyRoot, nodeHash } from "@zimchat/protocol";

/** The largest power of two strictly below `n` (n >= 2), RFC 9162's `k`. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * An in-memory RFC 9162 Merkle tree over leaf hashes that serves roots,
 * inclusion proofs and consistency proofs for any of its past sizes.
 *
 * It keeps every complete subtree's hash (levels[h][i] covers leaves
 * i*2^h .. (i+1)*2^h - 1), about 2n hashes of 32 bytes: 64 MB for a million
 * leaves, which is plenty for a community homeserver's accounts. Any subtree
 * hash the RFC's recursion asks for is then O(log n) lookups and hashes.
 */
export class MerkleTree {
  private readonly levels: Uint8Array[][] = [[]];

  /** Leaves in the tree. */
  get size(): number {
    return this.levels[0]!.length;
  }

  /** Appends a leaf hash and completes the subtrees it closes. */
  append(leafHashValue: Uint8Array): void {
    let hash = leafHashValue;
    for (let level = 0; ; level++) {
      const row = (this.levels[level] ??= []);
      row.push(hash);
      if (row.length % 2 === 1) return;
      hash = nodeHash(row[row.length - 2]!, row[row.length - 1]!);
    }
  }

  /** The root of the tree's first `size` leaves (the current tree by default). */
  root(size = this.size): Uint8Array {
    this.checkSize(size);
    return size === 0 ? emptyRoot() : this.subtree(0, size);
  }

  /** RFC 9162 §2.1.3.1 `PATH(index, D[size])`: the inclusion proof of leaf `index` in the tree of `size` leaves. */
  inclusionProof(index: number, size = this.size): Uint8Array[] {
    this.checkSize(size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size)
      throw new RangeError(`leaf ${index} is not in a tree of ${size}`);
    return this.path(index, 0, size);
  }

  /** RFC 9162 §2.1.4.1 `PROOF(from, D[to])`: empty when `from` is 0 or equals `to`. */
  consistencyProof(from: number, to = this.size): Uint8Array[] {
    this.checkSize(to);
    if (!Number.isSafeInteger(from) || from < 0 || from > to)
      throw new RangeError(`no consistency proof from ${from} to ${to}`);
    if (from === 0 || from === to) return [];
    return this.subproof(from, 0, to, true);
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size)
      throw new RangeError(`tree size ${size} is not between 0 and ${this.size}`);
  }

  /**
   * MTH(D[start .. start + n]) for a range the RFC's recursion produces (its left parts are aligned, complete
   * subtrees).
   */
  private subtree(start: number, n: number): Uint8Array {
    let height = 0;
    while (2 ** height < n) height++;
    if (2 ** height === n && start % n === 0) return this.levels[height]![start / n]!;
    const k = splitPoint(n);
    return nodeHash(this.subtree(start, k), this.subtree(start + k, n - k));
  }

  private path(m: number, start: number, n: number): Uint8Array[] {
    if (n === 1) return [];
    const k = splitPoint(n);
    return m < k
      ? [...this.path(m, start, k), this.subtree(start + k, n - k)]
      : [...this.path(m - k, start + k, n - k), this.subtree(start, k)];
  }

  private subproof(m: number, start: number, n: number, complete: boolean): Uint8Array[] {
    if (m === n) return complete ? [] : [this.subtree(start, n)];
    const k = splitPoint(n);
    return m <= k
      ? [...this.subproof(m, start, k, complete), this.subtree(start + k, n - k)]
      : [...this.subproof(m - k, start + k, n - k, false), this.subtree(start, k)];
  }
}
