import type { PluginStorage } from "@zimchat/plugin-sdk/server";
import { keyLogLeafSchema, leafBytes, leafHash, type KeyLogLeaf } from "@zimchat/protocol";
import { MerkleTree } from "./merkle-tree.js";

/** Storage key prefix of the leaves: `leaf:` and the index, zero-padded to 16 digits so key order is index order. */
export const leafKeyPrefix = "leaf:";

/** The storage key of leaf `index`. */
export function leafKey(index: number): string {
  return `${leafKeyPrefix}${String(index).padStart(16, "0")}`;
}

/** The stored leaves do not form a log (a gap, or an entry that is not a leaf): the message says which. */
export class KeyLogCorruptError extends Error {
  override name = "KeyLogCorruptError";
}

/**
 * The append-only log of published identity keys: leaves persisted one per
 * storage entry, and the Merkle tree over them rebuilt in memory at start.
 *
 * Appends are serialized (one at a time, in call order) and each is durable
 * in storage before it enters the tree and before its promise resolves.
 * One log per homeserver process: two nodes appending to the same storage
 * would both claim the next index, so run the plugin on one node.
 */
export class KeyLog {
  private readonly tree = new MerkleTree();
  private readonly leaves: KeyLogLeaf[] = [];
  /** `accountId identityKey` -> the latest index of that pair. */
  private readonly index = new Map<string, number>();
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly storage: PluginStorage) {}

  /**
   * Reads every stored leaf, in index order, and rebuilds the tree.
   * @throws KeyLogCorruptError for a missing index or an entry that does not parse as a leaf
   */
  async load(): Promise<void> {
    if (this.leaves.length) throw new Error("the key log is already loaded");
    let after: string | undefined;
    for (;;) {
      const page = await this.storage.list(leafKeyPrefix, { ...(after === undefined ? {} : { after }), limit: 1000 });
      for (const entry of page) {
        const expected = leafKey(this.leaves.length);
        if (entry.key !== expected)
          throw new KeyLogCorruptError(`key-transparency log: expected ${expected}, found ${entry.key}`);
        let leaf: KeyLogLeaf;
        try {
          leaf = keyLogLeafSchema.parse(JSON.parse(entry.value));
        } catch (error) {
          throw new KeyLogCorruptError(`key-transparency log: ${entry.key} is not a leaf`, { cause: error });
        }
        this.add(leaf);
      }
      if (page.length < 1000) return;
      after = page[page.length - 1]!.key;
    }
  }

  /**
   * Appends a leaf once the ones before it are in, after storing it.
   * @returns its index
   */
  append(leaf: KeyLogLeaf): Promise<number> {
    const parsed = keyLogLeafSchema.safeParse(leaf);
    if (!parsed.success)
      return Promise.reject(new TypeError(`not a key-log leaf: ${parsed.error.issues[0]?.message ?? "invalid"}`));
    const run = this.tail.then(async () => {
      const index = this.leaves.length;
      await this.storage.set(leafKey(index), JSON.stringify(parsed.data));
      this.add(parsed.data);
      return index;
    });
    // The next append waits for this one, whether it succeeded or not.
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Leaves in the log. */
  get size(): number {
    return this.leaves.length;
  }

  /** Leaf `index`, or undefined. */
  leaf(index: number): KeyLogLeaf | undefined {
    return this.leaves[index];
  }

  /** The latest index of a (account, identity key) pair, or undefined when the log does not hold it. */
  find(accountId: string, identityKey: string): number | undefined {
    return this.index.get(`${accountId} ${identityKey}`);
  }

  /** The root of the first `size` leaves. */
  root(size = this.size): Uint8Array {
    return this.tree.root(size);
  }

  /** The inclusion proof of leaf `index` in the tree of `size` leaves. */
  inclusionProof(index: number, size = this.size): Uint8Array[] {
    return this.tree.inclusionProof(index, size);
  }

  /** The consistency proof between the trees of `from` and `to` leaves. */
  consistencyProof(from: number, to = this.size): Uint8Array[] {
    return this.tree.consistencyProof(from, to);
  }

  private add(leaf: KeyLogLeaf): void {
    this.index.set(`${leaf.accountId} ${leaf.identityKey}`, this.leaves.length);
    this.leaves.push(leaf);
    this.tree.append(leafHash(leafBytes(leaf)));
  }
}
