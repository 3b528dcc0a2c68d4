/**
 * Pre-key upkeep: one-time keys refilled when the server runs low (at once,
 * and a full batch, while it says they are being drained), the signed and
 * last-resort keys rotated when due, replaced ones dropped after the grace
 * period.
 */
import { localDevice, type ClientContext } from "./client-context.js";
import type { KeyPolicy } from "./keys.js";
import { newKyberPreKey, newOneTimeKeys, newSignedPreKey, pruneReplacedKeys } from "./signal/index.js";

export class KeyUpkeep {
  constructor(
    private readonly ctx: ClientContext,
    private readonly policy: KeyPolicy,
  ) {}

  async maintain(now = Date.now()): Promise<void> {
    const { api, tasks, store, events } = this.ctx;
    const counts = await api.keyCount();
    if (counts.draining) events.emit("preKeysDraining", { ecCount: counts.ecCount, pqCount: counts.pqCount });
    await tasks.run(async () => {
      const identity = localDevice(this.ctx).identityPrivateKey;
      const { batchSize, rotateEveryMs, graceMs } = this.policy;
      const refillBelow = counts.draining ? batchSize : this.policy.refillBelow;
      const upload = newOneTimeKeys(
        store,
        identity,
        counts.ecCount < refillBelow ? batchSize : 0,
        counts.pqCount < refillBelow ? batchSize : 0,
      );
      const rotatedAt = Number(store.getValue("signedPreKeyRotatedAt") ?? 0);
      const body = {
        ...(upload.preKeys?.length ? { preKeys: upload.preKeys } : {}),
        ...(upload.pqPreKeys?.length ? { pqPreKeys: upload.pqPreKeys } : {}),
      };
      const rotation =
        now - rotatedAt >= rotateEveryMs
          ? {
              signedPreKey: newSignedPreKey(store, identity),
              pqLastResortPreKey: newKyberPreKey(store, identity, true),
            }
          : {};
      if (Object.keys(body).length || Object.keys(rotation).length) await api.uploadKeys({ ...body, ...rotation });
      pruneReplacedKeys(store, graceMs, now);
    });
  }
}
