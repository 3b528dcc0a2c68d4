import type { Bytes, Db } from "../db/database.js";
import { Prisma } from "../generated/prisma-sqlite/client.js";

/** A stored public key (signed or not). */
export interface StoredKey {
  keyId: number;
  publicKey: Bytes;
  signature?: Bytes;
}

/** A signed stored key. */
export interface SignedStoredKey extends StoredKey {
  signature: Bytes;
}

/** What one key upload changes; absent parts stay as they are. */
export interface KeyUpload {
  signedPreKey?: SignedStoredKey;
  kyberLastResort?: SignedStoredKey;
  /** Replaces every stored one-time EC pre-key of the device. */
  ecPreKeys?: StoredKey[];
  /** Replaces every stored one-time Kyber pre-key of the device. */
  kyberPreKeys?: SignedStoredKey[];
}

/** One device's bundle material, one-time keys already claimed. */
export interface DeviceKeys {
  deviceId: number;
  registrationId: number;
  signedPreKey: SignedStoredKey;
  ecPreKey: StoredKey | null;
  kyberPreKey: SignedStoredKey;
}

type Provider = "sqlite" | "postgresql";

/**
 * The key directory. One-time keys are claimed with a single
 * `DELETE ... RETURNING` statement, so each is handed out at most once under
 * any concurrency (Prisma has no row locks). On PostgreSQL the row is chosen
 * with `FOR UPDATE SKIP LOCKED`, so concurrent claims take different keys
 * instead of colliding on the same one; SQLite has a single writer.
 */
export class KeyStore {
  constructor(
    private readonly db: Db,
    private readonly provider: Provider,
  ) {}

  /** Applies an upload in one transaction. */
  async store(accountId: string, deviceId: number, upload: KeyUpload): Promise<void> {
    const where = { accountId, deviceId };
    const key = { accountId_deviceId: where };
    await this.db.$transaction(async (tx) => {
      if (upload.signedPreKey) {
        await tx.signedPreKey.upsert({
          where: key,
          create: { ...where, ...upload.signedPreKey },
          update: upload.signedPreKey,
        });
      }
      if (upload.kyberLastResort) {
        await tx.kyberLastResortKey.upsert({
          where: key,
          create: { ...where, ...upload.kyberLastResort },
          update: upload.kyberLastResort,
        });
      }
      if (upload.ecPreKeys) {
        await tx.ecPreKey.deleteMany({ where });
        if (upload.ecPreKeys.length) {
          await tx.ecPreKey.createMany({
            data: upload.ecPreKeys.map((k) => ({ ...where, keyId: k.keyId, publicKey: k.publicKey })),
          });
        }
      }
      if (upload.kyberPreKeys) {
        await tx.kyberPreKey.deleteMany({ where });
        if (upload.kyberPreKeys.length)
          await tx.kyberPreKey.createMany({ data: upload.kyberPreKeys.map((k) => ({ ...where, ...k })) });
      }
    });
  }

  /** The device's remaining one-time keys. */
  async counts(accountId: string, deviceId: number): Promise<{ ecCount: number; pqCount: number }> {
    const where = { accountId, deviceId };
    const [ecCount, pqCount] = await Promise.all([
      this.db.ecPreKey.count({ where }),
      this.db.kyberPreKey.count({ where }),
    ]);
    return { ecCount, pqCount };
  }

  /**
   * Bundle material for the given devices (all devices when `deviceId` is
   * undefined), claiming one one-time EC and one one-time Kyber key each,
   * unless `mayClaim` says no for the device: then no one-time EC key and
   * the last-resort Kyber key.
   */
  async claimBundles(
    accountId: string,
    deviceId: number | undefined,
    mayClaim: (deviceId: number) => Promise<boolean> = async () => true,
  ): Promise<DeviceKeys[]> {
    const devices = await this.db.device.findMany({
      where: deviceId === undefined ? { accountId } : { accountId, id: deviceId },
      select: { id: true, registrationId: true, signedPreKey: true, kyberLastResort: true },
      orderBy: { id: "asc" },
    });
    const result: DeviceKeys[] = [];
    for (const device of devices) {
      // A device registers with both signed keys; one without them is mid-removal.
      if (!device.signedPreKey || !device.kyberLastResort) continue;
      const [ecPreKey, kyberPreKey] = (await mayClaim(device.id))
        ? await Promise.all([this.claimEc(accountId, device.id), this.claimKyber(accountId, device.id)])
        : [null, null];
      result.push({
        deviceId: device.id,
        registrationId: device.registrationId,
        signedPreKey: pick(device.signedPreKey),
        ecPreKey,
        kyberPreKey: kyberPreKey ?? pick(device.kyberLastResort),
      });
    }
    return result;
  }

  private pickClause(): Prisma.Sql {
    return Prisma.raw(this.provider === "postgresql" ? "FOR UPDATE SKIP LOCKED" : "");
  }

  private async claimEc(accountId: string, deviceId: number): Promise<StoredKey | null> {
    const rows = await this.db.$queryRaw<{ keyId: number; publicKey: Bytes }[]>`
      DELETE FROM "EcPreKey" WHERE "accountId" = ${accountId} AND "deviceId" = ${deviceId} AND "keyId" = (
        SELECT "keyId" FROM "EcPreKey" WHERE "accountId" = ${accountId} AND "deviceId" = ${deviceId}
        ORDER BY "keyId" LIMIT 1 ${this.pickClause()})
      RETURNING "keyId", "publicKey"`;
    const row = rows[0];
    return row ? { keyId: Number(row.keyId), publicKey: row.publicKey } : null;
  }

  private async claimKyber(accountId: string, deviceId: number): Promise<SignedStoredKey | null> {
    const rows = await this.db.$queryRaw<{ keyId: number; publicKey: Bytes; signature: Bytes }[]>`
      DELETE FROM "KyberPreKey" WHERE "accountId" = ${accountId} AND "deviceId" = ${deviceId} AND "keyId" = (
        SELECT "keyId" FROM "KyberPreKey" WHERE "accountId" = ${accountId} AND "deviceId" = ${deviceId}
        ORDER BY "keyId" LIMIT 1 ${this.pickClause()})
      RETURNING "keyId", "publicKey", "signature"`;
    const row = rows[0];
    return row ? { keyId: Number(row.keyId), publicKey: row.publicKey, signature: row.signature } : null;
  }
}

function pick(key: { keyId: number; publicKey: Bytes; signature: Bytes }): SignedStoredKey {
  return { keyId: key.keyId, publicKey: key.publicKey, signature: key.signature };
}
