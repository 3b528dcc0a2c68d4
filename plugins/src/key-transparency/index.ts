/**
 * The key-transparency plugin: an append-only, publicly verifiable log of
 * every identity key the homeserver publishes.
 *
 * Each time an account is registered or resets its identity key, the plugin
 * appends a leaf (account UUID, identity key, time) to an RFC 9162 Merkle
 * tree (SHA-256), stored in its plugin storage before the hook resolves. It
 * signs tree heads with a libsignal key of its own (`<plugin data
 * dir>/log.key`, mode 0600, created on first start) and serves, under
 * `/plugins/key-transparency/`:
 *
 * - `GET /v1/head`: the latest signed tree head and the log's public key;
 * - `GET /v1/inclusion?accountId=&identityKey=` (or `?index=`): the leaf,
 *   its inclusion proof against the current head, and that head;
 * - `GET /v1/consistency?from=&to=`: a consistency proof between two sizes.
 *
 * Inclusion takes device credentials (`auth: "device"`), like the key
 * bundles: leaves name account ids and identity keys, which only members of
 * the server need to see. Heads and consistency proofs are hashes and sizes
 * only, public so that anyone (a witness, a gossiping client) can follow the
 * log without an account. Leaf times are kept to the day (UTC),
 * like the server's other account times; a leaf's index orders it.
 *
 * `@zimchat/client` checks every identity key it receives against the log
 * and every new head against the last one it saw. The tree is rebuilt in
 * memory at start from the stored leaves (about 64 bytes of hashes per
 * leaf: fine for a community server's thousands or millions of accounts).
 * Accounts registered before the plugin was enabled are not in the log
 * until they reset their identity, so enable it on a new server.
 *
 * @example zimchat.config.json
 * { "plugins": [{ "use": "@zimchat/plugins/key-transparency", "config": { "treeHeadMaxAgeSeconds": 3600 } }] }
 */
import type { PrivateKey } from "@signalapp/libsignal-client";
import { definePlugin, type PluginResponse } from "@zimchat/plugin-sdk/server";
import {
  keyLogConsistencyQuerySchema,
  keyLogInclusionQuerySchema,
  treeHeadPayload,
  type KeyLogConsistencyResponse,
  type KeyLogHeadResponse,
  type KeyLogInclusionResponse,
  type SignedTreeHead,
} from "@zimchat/protocol";
import { z } from "zod";
import { KeyLog } from "./key-log.js";
import { loadOrCreateLogKey, logKeyFingerprint } from "./log-key.js";

export { KeyLog, KeyLogCorruptError, leafKey, leafKeyPrefix } from "./key-log.js";
export { LogKeyError, loadOrCreateLogKey, logKeyFileName, logKeyFingerprint } from "./log-key.js";
export { MerkleTree } from "./merkle-tree.js";

/** The plugin's config. Nothing is required. */
export const keyTransparencyConfigSchema = z
  .strictObject({
    /**
     * Re-sign the head with a fresh timestamp when the last signed one is
     * older than this, even when no leaf was added, so clients can tell how
     * recent a head is. @default 3600
     */
    treeHeadMaxAgeSeconds: z
      .number()
      .int()
      .min(1)
      .max(30 * 86_400)
      .default(3600),
  })
  .prefault({});

/** The plugin's config, after defaults. */
export type KeyTransparencyConfig = z.output<typeof keyTransparencyConfigSchema>;

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const dayMs = 86_400_000;
/** Leaf times are the start of the day (UTC): the log is read by every member, exact times are more than it needs. */
const toDay = (ms: number): number => Math.floor(ms / dayMs) * dayMs;

/** A 4xx answer with a machine-readable code (the protocol's error body), changing nothing. */
function refuse(
  status: 400 | 404 | 503,
  code: "invalid_request" | "not_found" | "unavailable",
  message: string,
  issues?: z.core.$ZodIssue[],
): PluginResponse {
  return {
    status,
    body: {
      code,
      message,
      ...(issues
        ? { issues: issues.map((i) => ({ path: i.path.filter((p) => typeof p !== "symbol"), message: i.message })) }
        : {}),
    },
  };
}

/** Query values as strings only (a repeated parameter is refused by the schema's type check). */
function queryOf(query: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined));
}

/** The plugin. Enable it from the server's config file under `plugins`. */
export const keyTransparencyPlugin = definePlugin({
  name: "key-transparency",
  configSchema: keyTransparencyConfigSchema,
  setup(ctx, config) {
    const log = new KeyLog(ctx.storage);
    let key: PrivateKey | null = null;
    let publicKey = "";
    let head: SignedTreeHead | null = null;

    /**
     * The head of the current tree, signed again when the tree grew or the last one got older than the configured age.
     */
    function currentHead(): SignedTreeHead {
      if (!key) throw new Error("the key-transparency plugin has not started");
      const now = Date.now();
      if (head && head.treeSize === log.size && now - head.timestamp < config.treeHeadMaxAgeSeconds * 1000) return head;
      const unsigned = { treeSize: log.size, rootHash: b64(log.root()), timestamp: now };
      head = { ...unsigned, signature: b64(key.sign(treeHeadPayload(unsigned))) };
      return head;
    }

    ctx.route({
      method: "GET",
      path: "/v1/head",
      handler: () => {
        if (!key) return refuse(503, "unavailable", "the log is starting");
        const body: KeyLogHeadResponse = { head: currentHead(), publicKey };
        return { body };
      },
    });

    ctx.route({
      method: "GET",
      path: "/v1/inclusion",
      auth: "device",
      handler: ({ query }) => {
        if (!key) return refuse(503, "unavailable", "the log is starting");
        const parsed = keyLogInclusionQuerySchema.safeParse(queryOf(query));
        if (!parsed.success)
          return refuse(
            400,
            "invalid_request",
            "give accountId and identityKey (URL-encoded base64), or index",
            parsed.error.issues,
          );
        const signed = currentHead();
        const leafIndex =
          "index" in parsed.data ? parsed.data.index : log.find(parsed.data.accountId, parsed.data.identityKey);
        if (leafIndex === undefined || leafIndex >= signed.treeSize)
          return refuse(404, "not_found", "the log holds no such leaf");
        const body: KeyLogInclusionResponse = {
          leafIndex,
          leaf: log.leaf(leafIndex)!,
          proof: {
            leafIndex,
            treeSize: signed.treeSize,
            hashes: log.inclusionProof(leafIndex, signed.treeSize).map(b64),
          },
          head: signed,
        };
        return { body };
      },
    });

    ctx.route({
      method: "GET",
      path: "/v1/consistency",
      handler: ({ query }) => {
        if (!key) return refuse(503, "unavailable", "the log is starting");
        const parsed = keyLogConsistencyQuerySchema.safeParse(queryOf(query));
        if (!parsed.success)
          return refuse(
            400,
            "invalid_request",
            "give from and to, two tree sizes with from <= to",
            parsed.error.issues,
          );
        const { from, to } = parsed.data;
        if (to > log.size) return refuse(400, "invalid_request", `to is beyond the log's size (${log.size})`);
        const body: KeyLogConsistencyResponse = {
          proof: { fromSize: from, toSize: to, hashes: log.consistencyProof(from, to).map(b64) },
        };
        return { body };
      },
    });

    return {
      async start() {
        const loaded = loadOrCreateLogKey(ctx.dataDir);
        await log.load();
        key = loaded.key;
        const serialized = key.getPublicKey().serialize();
        publicKey = b64(serialized);
        ctx.logger.info(
          { leaves: log.size, created: loaded.created, fingerprint: logKeyFingerprint(serialized) },
          "key-transparency log loaded",
        );
      },
      async accountRegistered(event) {
        await log.append({ accountId: event.accountId, identityKey: event.identityKey, time: toDay(event.time) });
      },
      async identityKeyChanged(event) {
        await log.append({ accountId: event.accountId, identityKey: event.identityKey, time: toDay(event.time) });
      },
    };
  },
});

export default keyTransparencyPlugin;
