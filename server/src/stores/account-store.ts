import type { Bytes, Db } from "../db/database.js";
import { Prisma } from "../generated/prisma-sqlite/client.js";
import { dayNumber, SeenToday, startOfDay } from "../util/day.js";

/** What authentication needs to know about a device. */
export interface DeviceCredentials {
  passwordSalt: Bytes;
  passwordHash: Bytes;
  /** Whether an admin disabled the device's account. */
  disabled: boolean;
}

/** A device's id and registration id. */
export interface DeviceRef {
  id: number;
  registrationId: number;
}

/** A signed public key as stored. */
export interface SignedKey {
  keyId: number;
  publicKey: Bytes;
  signature: Bytes;
}

/** A new account with its first device and that device's signed keys. */
export interface NewAccount {
  id: string;
  username: string;
  identityKey: Bytes;
  device: {
    id: number;
    registrationId: number;
    passwordSalt: Bytes;
    passwordHash: Bytes;
    signedPreKey: SignedKey;
    kyberLastResort: SignedKey;
  };
}

/** Thrown by {@link AccountStore.create} when the username is taken. */
export class UsernameTakenError extends Error {
  override name = "UsernameTakenError";
}

/** Accounts and devices. */
export class AccountStore {
  constructor(private readonly db: Db) {}

  /**
   * Creates the account, its first device and its signed keys in one
   * transaction. `beforeCommit` runs inside it (for invite consumption) and
   * its failure rolls everything back.
   */
  async create(account: NewAccount, beforeCommit: (tx: Db) => Promise<void>): Promise<void> {
    try {
      await this.db.$transaction(async (tx) => {
        await beforeCommit(tx as Db);
        const { device } = account;
        // Creation times are kept to the day: the exact minute would say more than anyone needs.
        const createdAt = startOfDay();
        await tx.account.create({
          data: {
            id: account.id,
            username: account.username,
            identityKey: account.identityKey,
            createdAt,
            devices: {
              create: {
                id: device.id,
                createdAt,
                registrationId: device.registrationId,
                passwordSalt: device.passwordSalt,
                passwordHash: device.passwordHash,
                signedPreKey: { create: device.signedPreKey },
                kyberLastResort: { create: device.kyberLastResort },
              },
            },
          },
        });
      });
    } catch (error) {
      if ((error as { code?: string }).code === "P2002")
        throw new UsernameTakenError(account.username, { cause: error });
      throw error;
    }
  }

  /**
   * Replaces the identity key and the primary device's registration id and
   * signed keys; removes the other devices (their keys and queues cascade)
   * and the primary device's one-time keys and queued envelopes.
   * @returns the replaced identity key, read in the same transaction
   */
  async resetIdentity(
    accountId: string,
    identity: { identityKey: Bytes; registrationId: number; signedPreKey: SignedKey; kyberLastResort: SignedKey },
  ): Promise<Bytes> {
    const device = { accountId, deviceId: 1 };
    const key = { accountId_deviceId: device };
    const [previous] = await this.db.$transaction([
      this.db.account.findUniqueOrThrow({ where: { id: accountId }, select: { identityKey: true } }),
      this.db.account.update({ where: { id: accountId }, data: { identityKey: identity.identityKey } }),
      this.db.device.deleteMany({ where: { accountId, id: { not: 1 } } }),
      this.db.device.update({
        where: { accountId_id: { accountId, id: 1 } },
        data: { registrationId: identity.registrationId },
      }),
      this.db.signedPreKey.update({ where: key, data: identity.signedPreKey }),
      this.db.kyberLastResortKey.update({ where: key, data: identity.kyberLastResort }),
      this.db.ecPreKey.deleteMany({ where: device }),
      this.db.kyberPreKey.deleteMany({ where: device }),
      this.db.envelope.deleteMany({ where: device }),
      this.db.mailboxUsage.deleteMany({ where: device }),
    ]);
    return previous.identityKey;
  }

  /** The credentials of one device, or null when there is no such device. */
  async credentials(accountId: string, deviceId: number): Promise<DeviceCredentials | null> {
    const row = await this.db.device.findUnique({
      where: { accountId_id: { accountId, id: deviceId } },
      select: { passwordSalt: true, passwordHash: true, account: { select: { disabledAt: true } } },
    });
    return (
      row && {
        passwordSalt: row.passwordSalt,
        passwordHash: row.passwordHash,
        disabled: row.account.disabledAt !== null,
      }
    );
  }

  /**
   * Records that the device authenticated today, as a day number (metadata
   * minimisation: no finer time is kept). Writes at most once per device per
   * day per process; the hot path answers from memory.
   */
  async markSeen(accountId: string, deviceId: number, day: number = dayNumber()): Promise<void> {
    const key = `${accountId}.${deviceId}`;
    if (!this.seenToday.mark(key, day)) return;
    try {
      await this.db.device.updateMany({
        where: { accountId, id: deviceId, lastSeenDay: { lt: day } },
        data: { lastSeenDay: day },
      });
    } catch (error) {
      this.seenToday.forget(key);
      throw error;
    }
  }

  private readonly seenToday = new SeenToday();

  /** The account's username and identity key. */
  async find(accountId: string): Promise<{ username: string; identityKey: Bytes } | null> {
    return this.db.account.findUnique({ where: { id: accountId }, select: { username: true, identityKey: true } });
  }

  /** The account id for a username. */
  async idForUsername(username: string): Promise<string | null> {
    const row = await this.db.account.findUnique({ where: { username }, select: { id: true } });
    return row?.id ?? null;
  }

  /** The current devices of several accounts, in one raw query (the send hot path). */
  async devicesOf(accountIds: string[]): Promise<Map<string, DeviceRef[]>> {
    if (!accountIds.length) return new Map();
    const rows = await this.db.$queryRaw<{ accountId: string; id: number; registrationId: number }[]>`
      SELECT "accountId", "id", "registrationId" FROM "Device" WHERE "accountId" IN (${Prisma.join(accountIds)}) ORDER BY "accountId", "id"`;
    const result = new Map<string, DeviceRef[]>();
    for (const row of rows) {
      const list = result.get(row.accountId) ?? [];
      list.push({ id: Number(row.id), registrationId: Number(row.registrationId) });
      result.set(row.accountId, list);
    }
    return result;
  }

  // Sealed sender (unidentified access).

  /** Stores the SHA-256 of the account's access key and whether it accepts sealed messages from anyone. */
  async setUnidentifiedAccess(accountId: string, accessKeyHash: Bytes, unrestrictedAccess: boolean): Promise<void> {
    await this.db.account.update({ where: { id: accountId }, data: { accessKeyHash, unrestrictedAccess } });
  }

  /** The unidentified-access settings of several accounts (unknown ids are absent), in one query. */
  async unidentifiedAccessOf(accountIds: string[]): Promise<Map<string, UnidentifiedAccess>> {
    if (!accountIds.length) return new Map();
    const rows = await this.db.account.findMany({
      where: { id: { in: accountIds } },
      select: { id: true, accessKeyHash: true, unrestrictedAccess: true },
    });
    return new Map(
      rows.map((r) => [r.id, { accessKeyHash: r.accessKeyHash, unrestrictedAccess: r.unrestrictedAccess }]),
    );
  }
}

/** An account's sealed-sender settings. */
export interface UnidentifiedAccess {
  /** SHA-256 of the 16-byte access key; null until the account sets one. */
  accessKeyHash: Bytes | null;
  unrestrictedAccess: boolean;
}
