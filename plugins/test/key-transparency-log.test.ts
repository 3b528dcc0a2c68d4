import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { chmodSync, statSync } from "node:fs";
import { join } from "node:path";
import { PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import {
  keyLogConsistencyResponseSchema,
  keyLogHeadResponseSchema,
  keyLogInclusionResponseSchema,
  keyTransparencyLimits,
  leafBytes,
  leafHash,
  merkleRoot,
  treeHeadPayload,
  verifyConsistency,
  verifyInclusion,
  type KeyLogLeaf,
} from "@zimchat/protocol";
import {
  KeyLog,
  LogKeyError,
  MerkleTree,
  keyTransparencyPlugin,
  leafKey,
  logKeyFileName,
} from "../src/key-transparency/index.js";
import { MemoryPluginStorage, startPlugin } from "./support/kt-memory-storage.js";

// An independent Merkle tree hash, straight from RFC 9162 §2.1.1's recursive definition.
const sha256 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
function mth(data: Uint8Array[]): Uint8Array {
  const n = data.length;
  if (n === 0) return sha256();
  if (n === 1) return sha256(Uint8Array.of(0), data[0]!);
  let k = 1;
  while (k * 2 < n) k *= 2;
  return sha256(Uint8Array.of(1), mth(data.slice(0, k)), mth(data.slice(k)));
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));
const flip = (bytes: Uint8Array, at = 0): Uint8Array => {
  const copy = new Uint8Array(bytes);
  copy[at % copy.length]! ^= 0x01;
  return copy;
};
const data = (n: number): Uint8Array[] => Array.from({ length: n }, (_, i) => new Uint8Array(Buffer.from(`leaf ${i}`)));
function treeOf(leaves: Uint8Array[]): MerkleTree {
  const tree = new MerkleTree();
  for (const d of leaves) tree.append(leafHash(d));
  return tree;
}
const newLeaf = (time = Date.now()): KeyLogLeaf => ({
  accountId: randomUUID(),
  identityKey: b64(PrivateKey.generate().getPublicKey().serialize()),
  time,
});

describe("key-transparency Merkle tree (RFC 9162)", () => {
  it("roots for sizes 0..70 match the recursive definition, at every size the tree has grown through", () => {
    const leaves = data(70);
    const tree = treeOf(leaves);
    for (let n = 0; n <= 70; n++) {
      const expected = mth(leaves.slice(0, n));
      assert.deepEqual(tree.root(n), expected, `tree.root(${n})`);
      assert.deepEqual(merkleRoot(leaves.slice(0, n).map((d) => leafHash(d))), expected, `merkleRoot of ${n}`);
    }
    assert.equal(b64(mth([])), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "the empty root is SHA-256 of nothing");
  });

  it("every inclusion proof of every leaf in trees of 1..40 leaves verifies; tampering of any kind does not", () => {
    const leaves = data(41);
    const tree = treeOf(leaves);
    let checked = 0;
    for (let n = 1; n <= 40; n++) {
      const root = tree.root(n);
      for (let i = 0; i < n; i++) {
        const hash = leafHash(leaves[i]!);
        const proof = tree.inclusionProof(i, n);
        assert.ok(verifyInclusion(hash, i, n, proof, root), `leaf ${i} of ${n}`);
        checked++;
        // A wrong leaf, root, index or size.
        assert.equal(
          verifyInclusion(leafHash(leaves[(i + 1) % 41]!), i, n, proof, root),
          false,
          `wrong leaf ${i}/${n}`,
        );
        assert.equal(verifyInclusion(hash, i, n, proof, flip(root)), false, `wrong root ${i}/${n}`);
        assert.equal(verifyInclusion(hash, i, n, proof, tree.root(n + 1)), false, `the next tree's root ${i}/${n}`);
        if (i + 1 < n) assert.equal(verifyInclusion(hash, i + 1, n, proof, root), false, `wrong index ${i}/${n}`);
        if (i > 0) assert.equal(verifyInclusion(hash, i - 1, n, proof, root), false, `wrong index ${i}/${n}`);
        // A proof for one size does not prove the leaf in a tree of another size (with that tree's root).
        assert.equal(verifyInclusion(hash, i, n + 1, proof, tree.root(n + 1)), false, `larger size ${i}/${n}`);
        if (i < n - 1)
          assert.equal(verifyInclusion(hash, i, n - 1, proof, tree.root(n - 1)), false, `smaller size ${i}/${n}`);
        assert.equal(verifyInclusion(hash, n, n, proof, root), false, "index == size");
        // A tampered, shortened or lengthened path.
        for (let j = 0; j < proof.length; j++) {
          const tampered = proof.map((p, k) => (k === j ? flip(p, j) : p));
          assert.equal(verifyInclusion(hash, i, n, tampered, root), false, `tampered hash ${j} of ${i}/${n}`);
        }
        if (proof.length)
          assert.equal(verifyInclusion(hash, i, n, proof.slice(0, -1), root), false, `shortened ${i}/${n}`);
        assert.equal(verifyInclusion(hash, i, n, [...proof, root], root), false, `lengthened ${i}/${n}`);
      }
    }
    assert.equal(checked, (40 * 41) / 2);
  });

  it("every consistency proof between sizes m <= n <= 40 verifies; tampering of any kind does not", () => {
    const leaves = data(41);
    const tree = treeOf(leaves);
    const roots = Array.from({ length: 42 }, (_, n) => (n <= 41 ? tree.root(n) : new Uint8Array()));
    let checked = 0;
    for (let n = 0; n <= 40; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = tree.consistencyProof(m, n);
        assert.ok(verifyConsistency(m, n, proof, roots[m]!, roots[n]!), `${m} -> ${n}`);
        checked++;
        if (m === n || m === 0) {
          assert.equal(proof.length, 0);
          if (m === n && n > 0)
            assert.equal(verifyConsistency(m, n, [], roots[m]!, flip(roots[n]!)), false, "same size, other root");
          continue;
        }
        assert.equal(verifyConsistency(m, n, proof, flip(roots[m]!), roots[n]!), false, `wrong first root ${m}->${n}`);
        assert.equal(verifyConsistency(m, n, proof, roots[m]!, flip(roots[n]!)), false, `wrong second root ${m}->${n}`);
        assert.equal(verifyConsistency(m, n, proof, roots[m]!, roots[n + 1]!), false, `a later second root ${m}->${n}`);
        assert.equal(
          verifyConsistency(m, n + 1, proof, roots[m]!, roots[n + 1]!),
          false,
          `wrong second size ${m}->${n}`,
        );
        assert.equal(verifyConsistency(n, m, proof, roots[n]!, roots[m]!), false, `reversed ${m}->${n}`);
        if (m + 1 < n)
          assert.equal(
            verifyConsistency(m + 1, n, proof, roots[m + 1]!, roots[n]!),
            false,
            `wrong first size ${m}->${n}`,
          );
        for (let j = 0; j < proof.length; j++) {
          const tampered = proof.map((p, k) => (k === j ? flip(p, j) : p));
          assert.equal(
            verifyConsistency(m, n, tampered, roots[m]!, roots[n]!),
            false,
            `tampered hash ${j} of ${m}->${n}`,
          );
        }
        assert.equal(verifyConsistency(m, n, proof.slice(0, -1), roots[m]!, roots[n]!), false, `shortened ${m}->${n}`);
        assert.equal(
          verifyConsistency(m, n, [...proof, roots[n]!], roots[m]!, roots[n]!),
          false,
          `lengthened ${m}->${n}`,
        );
      }
    }
    assert.equal(checked, (41 * 42) / 2);
    // A history rewritten at any leaf is inconsistent with the old head.
    for (let changed = 0; changed < 20; changed++) {
      const rewritten = treeOf(leaves.map((d, i) => (i === changed ? flip(d) : d)));
      assert.equal(
        verifyConsistency(20, 40, rewritten.consistencyProof(20, 40), roots[20]!, rewritten.root(40)),
        false,
        `rewritten leaf ${changed}`,
      );
    }
  });

  it("proofs longer than the limit are refused before any hashing", () => {
    const long = Array.from({ length: keyTransparencyLimits.maxProofHashes + 1 }, () => new Uint8Array(32));
    assert.equal(verifyInclusion(new Uint8Array(32), 0, 2 ** 40, long, new Uint8Array(32)), false);
    assert.equal(verifyConsistency(1, 2 ** 40, long, new Uint8Array(32), new Uint8Array(32)), false);
    assert.equal(
      keyLogConsistencyResponseSchema.safeParse({ proof: { fromSize: 1, toSize: 2, hashes: long.map(b64) } }).success,
      false,
    );
  });

  it("leaf and tree-head bytes are fixed-length, versioned and domain-separated", () => {
    const leaf = newLeaf(1_700_000_000_000);
    const bytes = leafBytes(leaf);
    const prefix = Buffer.from("zimchat key transparency leaf\u0000\u0001", "latin1");
    assert.equal(bytes.length, prefix.length + 16 + 33 + 8);
    assert.ok(Buffer.from(bytes).subarray(0, prefix.length).equals(prefix));
    assert.equal(
      Buffer.from(bytes)
        .subarray(prefix.length, prefix.length + 16)
        .toString("hex"),
      leaf.accountId.replaceAll("-", ""),
    );
    assert.equal(Buffer.from(bytes).readBigUInt64BE(bytes.length - 8), 1_700_000_000_000n);
    const payload = treeHeadPayload({ treeSize: 3, rootHash: b64(new Uint8Array(32).fill(7)), timestamp: 5 });
    assert.ok(Buffer.from(payload).toString("latin1").startsWith("zimchat key transparency tree head\u0000\u0001"));
    assert.notDeepEqual(leafBytes({ ...leaf, time: leaf.time + 1 }), bytes);
    assert.throws(() => leafBytes({ ...leaf, identityKey: b64(new Uint8Array(32)) }));
  });
});

describe("key-transparency plugin", () => {
  it("appends on registration and identity change, signs heads that libsignal verifies, and serves proofs that verify", async () => {
    const plugin = await startPlugin(keyTransparencyPlugin);
    const { head, publicKey } = keyLogHeadResponseSchema.parse((await plugin.call("GET", "/v1/head")).body);
    assert.equal(head.treeSize, 0);
    const logKey = PublicKey.deserialize(unb64(publicKey) as Uint8Array<ArrayBuffer>);

    assert.deepEqual(
      plugin.routes.map((r) => [r.method, r.path, r.auth]),
      [
        ["GET", "/v1/head", undefined],
        ["GET", "/v1/inclusion", "device"],
        ["GET", "/v1/consistency", undefined],
      ],
      "leaves (account ids and keys) for members only; heads and proofs are public hashes",
    );
    const day = 86_400_000;
    const leaves: KeyLogLeaf[] = [];
    for (let i = 0; i < 12; i++) {
      const leaf = newLeaf((19_000 + i) * day + 12_345_678);
      // Logged to the day.
      leaves.push({ ...leaf, time: (19_000 + i) * day });
      await plugin.hooks.accountRegistered!({
        accountId: leaf.accountId,
        username: `user${i}`,
        identityKey: leaf.identityKey,
        time: leaf.time,
      });
      // Durable before the hook resolves.
      assert.ok(plugin.storage.entries.has(leafKey(i)));
    }
    const reset = newLeaf(20_000 * day);
    reset.accountId = leaves[3]!.accountId;
    await plugin.hooks.identityKeyChanged!({
      accountId: reset.accountId,
      identityKey: reset.identityKey,
      previousIdentityKey: leaves[3]!.identityKey,
      time: reset.time + 1,
    });
    leaves.push(reset);

    const latest = keyLogHeadResponseSchema.parse((await plugin.call("GET", "/v1/head")).body).head;
    assert.equal(latest.treeSize, 13);
    assert.deepEqual(unb64(latest.rootHash), mth(leaves.map(leafBytes)));
    const payload = treeHeadPayload(latest);
    const signature = unb64(latest.signature) as Uint8Array<ArrayBuffer>;
    assert.ok(logKey.verify(payload, signature), "the head signature verifies with libsignal");
    for (let i = 0; i < payload.length; i += 7)
      assert.equal(
        logKey.verify(flip(payload, i) as Uint8Array<ArrayBuffer>, signature),
        false,
        `payload byte ${i} flipped`,
      );
    for (let i = 0; i < signature.length; i += 5)
      assert.equal(
        logKey.verify(payload, flip(signature, i) as Uint8Array<ArrayBuffer>),
        false,
        `signature byte ${i} flipped`,
      );
    assert.equal(
      PrivateKey.generate().getPublicKey().verify(payload, signature),
      false,
      "another key does not verify it",
    );

    for (const [i, leaf] of leaves.entries()) {
      const byKey = keyLogInclusionResponseSchema.parse(
        (await plugin.call("GET", "/v1/inclusion", { accountId: leaf.accountId, identityKey: leaf.identityKey })).body,
      );
      const byIndex = keyLogInclusionResponseSchema.parse(
        (await plugin.call("GET", "/v1/inclusion", { index: String(i) })).body,
      );
      assert.equal(byKey.leafIndex, i);
      assert.deepEqual(byKey, byIndex);
      assert.deepEqual(byKey.leaf, leaf);
      assert.ok(
        verifyInclusion(
          leafHash(leafBytes(byKey.leaf)),
          i,
          byKey.head.treeSize,
          byKey.proof.hashes.map(unb64),
          unb64(byKey.head.rootHash),
        ),
      );
    }
    // The account's old key stays in the log: the log is append-only.
    assert.equal(
      (
        await plugin.call("GET", "/v1/inclusion", {
          accountId: leaves[3]!.accountId,
          identityKey: leaves[3]!.identityKey,
        })
      ).status ?? 200,
      200,
    );

    const old = (await plugin.call("GET", "/v1/consistency", { from: "5", to: "13" })).body;
    const proof = keyLogConsistencyResponseSchema.parse(old).proof;
    assert.ok(
      verifyConsistency(5, 13, proof.hashes.map(unb64), mth(leaves.slice(0, 5).map(leafBytes)), unb64(latest.rootHash)),
    );
  });

  it("refuses bad queries with 4xx codes, changing nothing", async () => {
    const plugin = await startPlugin(keyTransparencyPlugin);
    const leaf = newLeaf();
    await plugin.hooks.accountRegistered!({ ...leaf, username: "alice" });
    const before = new Map(plugin.storage.entries);
    const cases: [string, Record<string, string>, number][] = [
      ["/v1/inclusion", {}, 400],
      ["/v1/inclusion", { accountId: "not-a-uuid", identityKey: leaf.identityKey }, 400],
      ["/v1/inclusion", { accountId: leaf.accountId, identityKey: "AAAA" }, 400],
      ["/v1/inclusion", { accountId: leaf.accountId, identityKey: leaf.identityKey.replace("+", " ") + "x" }, 400],
      ["/v1/inclusion", { accountId: leaf.accountId }, 400],
      ["/v1/inclusion", { index: "-1" }, 400],
      ["/v1/inclusion", { index: "01" }, 400],
      ["/v1/inclusion", { index: "1".repeat(40) }, 400],
      ["/v1/inclusion", { index: "0", accountId: leaf.accountId }, 400],
      ["/v1/inclusion", { index: "1" }, 404],
      ["/v1/inclusion", { accountId: randomUUID(), identityKey: leaf.identityKey }, 404],
      ["/v1/consistency", { from: "2", to: "1" }, 400],
      ["/v1/consistency", { from: "0", to: "2" }, 400],
      ["/v1/consistency", { from: "x", to: "1" }, 400],
      ["/v1/consistency", { from: "0" }, 400],
      ["/v1/consistency", { from: "0", to: "1", extra: "1" }, 400],
    ];
    for (const [path, query, status] of cases) {
      const response = await plugin.call("GET", path, query);
      assert.equal(response.status, status, `${path} ${JSON.stringify(query)}`);
      assert.match((response.body as { code: string }).code, status === 404 ? /^not_found$/ : /^invalid_request$/);
    }
    assert.deepEqual(plugin.storage.entries, before);
  });

  it("serializes concurrent appends, each durable, and rebuilds the same tree at restart with the same key", async () => {
    const first = await startPlugin(keyTransparencyPlugin);
    const leaves = Array.from({ length: 40 }, (_, i) => newLeaf(i));
    await Promise.all(leaves.map((l) => first.hooks.accountRegistered!({ ...l, username: "u" })));
    assert.deepEqual(
      [...first.storage.entries.keys()].sort(),
      leaves.map((_, i) => leafKey(i)),
    );
    const stored = [...first.storage.entries.keys()]
      .sort()
      .map((k) => JSON.parse(first.storage.entries.get(k)!) as KeyLogLeaf);
    assert.deepEqual(new Set(stored.map((l) => l.accountId)), new Set(leaves.map((l) => l.accountId)));
    const head = keyLogHeadResponseSchema.parse((await first.call("GET", "/v1/head")).body);
    assert.deepEqual(unb64(head.head.rootHash), mth(stored.map(leafBytes)));

    const keyFile = join(first.dataDir, logKeyFileName);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600, "the log key is mode 0600");
    const again = await startPlugin(keyTransparencyPlugin, {}, { storage: first.storage, dataDir: first.dataDir });
    const reloaded = keyLogHeadResponseSchema.parse((await again.call("GET", "/v1/head")).body);
    assert.equal(reloaded.publicKey, head.publicKey);
    assert.equal(reloaded.head.rootHash, head.head.rootHash);

    // A rewritten leaf gives a different tree that no consistency proof can join to the old head.
    first.storage.entries.set(leafKey(7), JSON.stringify({ ...stored[7]!, identityKey: newLeaf().identityKey }));
    const rewritten = await startPlugin(keyTransparencyPlugin, {}, { storage: first.storage, dataDir: first.dataDir });
    const newHead = keyLogHeadResponseSchema.parse((await rewritten.call("GET", "/v1/head")).body).head;
    assert.equal(newHead.treeSize, 40);
    assert.notEqual(newHead.rootHash, head.head.rootHash);
    await rewritten.hooks.accountRegistered!({ ...newLeaf(), username: "late" });
    const proof = keyLogConsistencyResponseSchema.parse(
      (await rewritten.call("GET", "/v1/consistency", { from: "40", to: "41" })).body,
    ).proof;
    const grown = keyLogHeadResponseSchema.parse((await rewritten.call("GET", "/v1/head")).body).head;
    assert.equal(
      verifyConsistency(40, 41, proof.hashes.map(unb64), unb64(head.head.rootHash), unb64(grown.rootHash)),
      false,
    );

    // A gap or a garbage entry stops the start.
    first.storage.entries.delete(leafKey(3));
    await assert.rejects(
      startPlugin(keyTransparencyPlugin, {}, { storage: first.storage, dataDir: first.dataDir }),
      /expected leaf:0000000000000003/,
    );
  });

  it("refuses to start with a log key readable by others, and re-signs a head once it is older than treeHeadMaxAgeSeconds", async () => {
    const plugin = await startPlugin(keyTransparencyPlugin, { treeHeadMaxAgeSeconds: 1 });
    const first = keyLogHeadResponseSchema.parse((await plugin.call("GET", "/v1/head")).body).head;
    assert.deepEqual(
      keyLogHeadResponseSchema.parse((await plugin.call("GET", "/v1/head")).body).head,
      first,
      "cached while fresh",
    );
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const later = keyLogHeadResponseSchema.parse((await plugin.call("GET", "/v1/head")).body).head;
    assert.ok(later.timestamp > first.timestamp);
    assert.equal(later.rootHash, first.rootHash);

    chmodSync(join(plugin.dataDir, logKeyFileName), 0o644);
    await assert.rejects(
      startPlugin(keyTransparencyPlugin, {}, { dataDir: plugin.dataDir }),
      (error: unknown) => error instanceof LogKeyError && /chmod 600/.test(error.message),
    );
    assert.throws(() => keyTransparencyPlugin.configSchema.parse({ treeHeadMaxAgeSeconds: 0 }));
    assert.throws(() => keyTransparencyPlugin.configSchema.parse({ unknown: true }));
  });

  it("a KeyLog on its own: appends in order and finds pairs", async () => {
    const log = new KeyLog(new MemoryPluginStorage());
    await log.load();
    const a = newLeaf();
    assert.equal(await log.append(a), 0);
    assert.equal(log.find(a.accountId, a.identityKey), 0);
    assert.equal(log.find(a.accountId, newLeaf().identityKey), undefined);
    await assert.rejects(log.append({ ...a, accountId: "x" }));
    assert.equal(await log.append(newLeaf()), 1, "a refused leaf takes no index");
  });
});
