import type { Bytes, Db } from "../db/database.js";
import { dayNumber, startOfDay } from "../util/day.js";
import type { SignedKey } from "./account-store.js";

/** A linking code row as the service sees it (never the code itself: only its hash is stored). */
export interface StoredLinkCode {
  accountId: string | null;
  provisioningMessage: Bytes | null;
  expiresAt: number;
}

/** What a linked device is created with, once its keys have been checked. */
export interface NewLinkedDevice {
  registrationId: number;
  passwordSalt: Bytes;
  passwordHash: Bytes;
  signedPreKey: SignedKey;
  kyberLastResort: SignedKey;
}

/** A device of an account as listed. */
export interface DeviceRow {
  id: number;
  createdAt: Date;
  /** Days since the epoch; 0 = never seen. */
  lastSeenDay: number;
}

/** Why {@link DeviceStore.link} refused: the code is unknown or used, expired, unconfirmed, or the account is full. */
export type LinkRefusal = "not_found" | "expired" | "not_confirmed" | "too_many_devices";

/** Thrown by {@link DeviceStore.link}; nothing was changed. */
export class LinkRefusedError extends Error {
  override name = "LinkRefusedError";
  constructor(readonly reason: LinkRefusal) {
    super(`link refused: ${reason}`);
  }
}

/** Outcome of {@link DeviceStore.confirm}. */
export type ConfirmOutcome = "confirmed" | "not_found" | "expired" | "already_confirmed";

type Provider = "sqlite" | "postgresql";

/**
 * Linking codes and linked devices. A link runs in one transaction that
 * consumes the code, checks the device cap and takes the lowest free device
 * id. On PostgreSQL the account row is locked (`FOR UPDATE`) first, so
 * concurrent links of one account run one after the other and can neither
 * take the same id nor overshoot the cap; SQLite transactions already run
 * one at a time (one writer, and the adapter serialises transactions).
 */
export class DeviceStore {
  constructor(
    private readonly db: Db,
    private readonly provider: Provider,
  ) {}

  async createLink(codeHash: Bytes, expiresAt: number): Promise<void> {
    await this.db.linkCode.create({ data: { codeHash, expiresAt: BigInt(expiresAt) } });
  }

  async findLink(codeHash: Bytes): Promise<StoredLinkCode | null> {
    const row = await this.db.linkCode.findUnique({ where: { codeHash } });
    return (
      row && {
        accountId: row.accountId,
        provisioningMessage: row.provisioningMessage,
        expiresAt: Number(row.expiresAt),
      }
    );
  }

  /**
   * Attaches the account and the provisioning message to an unconfirmed,
   * unexpired code: one compare-and-set, so two confirmations cannot both win.
   */
  async confirm(codeHash: Bytes, accountId: string, provisioningMessage: Bytes, now: number): Promise<ConfirmOutcome> {
    const { count } = await this.db.linkCode.updateMany({
      where: { codeHash, accountId: null, expiresAt: { gt: BigInt(now) } },
      data: { accountId, provisioningMessage },
    });
    if (count === 1) return "confirmed";
    const row = await this.findLink(codeHash);
    if (!row) return "not_found";
    if (row.expiresAt <= now) return "expired";
    return "already_confirmed";
  }

  /**
   * Consumes a confirmed, unexpired code and creates the device with the
   * lowest free id of the code's account, all in one transaction.
   * `prepare` gets the account's identity key and returns the device to
   * create; if it throws (a bad signature), nothing is changed.
   * @throws LinkRefusedError when the code or the cap refuses; nothing is changed
   */
  async link(
    codeHash: Bytes,
    now: number,
    maxDevices: number,
    prepare: (identityKey: Bytes) => NewLinkedDevice,
  ): Promise<{ accountId: string; deviceId: number; username: string }> {
    return this.db.$transaction(async (tx) => {
      const code = await tx.linkCode.findUnique({ where: { codeHash }, select: { accountId: true, expiresAt: true } });
      if (!code) throw new LinkRefusedError("not_found");
      if (Number(code.expiresAt) <= now) throw new LinkRefusedError("expired");
      const accountId = code.accountId;
      if (accountId === null) throw new LinkRefusedError("not_confirmed");
      // A concurrent link with the same code deleted it first: the code is used.
      const { count } = await tx.linkCode.deleteMany({ where: { codeHash, accountId } });
      if (count !== 1) throw new LinkRefusedError("not_found");

      if (this.provider === "postgresql")
        await tx.$queryRaw`SELECT "id" FROM "Account" WHERE "id" = ${accountId} FOR UPDATE`;
      const account = await tx.account.findUnique({
        where: { id: accountId },
        select: { username: true, identityKey: true },
      });
      // The account was deleted after confirming (its codes cascade, so this is a race only).
      if (!account) throw new LinkRefusedError("not_found");
      const device = prepare(account.identityKey);

      const taken = new Set(
        (await tx.device.findMany({ where: { accountId }, select: { id: true } })).map((d) => d.id),
      );
      if (taken.size >= maxDevices) throw new LinkRefusedError("too_many_devices");
      // Lowest free id first; with fewer than `maxDevices` (<= 127) taken, it is at most 127.
      let deviceId = 1;
      while (taken.has(deviceId)) deviceId++;

      await tx.device.create({
        data: {
          accountId,
          id: deviceId,
          // Kept to the day, like the primary's: the exact minute would say more than anyone needs.
          createdAt: startOfDay(now),
          // Linking proves the code, so the device is seen today. Written here because a
          // relinked id would otherwise stay unseen: last-seen writes are cached per id and day.
          lastSeenDay: dayNumber(now),
          registrationId: device.registrationId,
          passwordSalt: device.passwordSalt,
          passwordHash: device.passwordHash,
          signedPreKey: { create: device.signedPreKey },
          kyberLastResort: { create: device.kyberLastResort },
        },
      });
      return { accountId, deviceId, username: account.username };
    });
  }

  /** The account's devices, by id. */
  async list(accountId: string): Promise<DeviceRow[]> {
    return this.db.device.findMany({
      where: { accountId },
      select: { id: true, createdAt: true, lastSeenDay: true },
      orderBy: { id: "asc" },
    });
  }

  /**
   * Deletes a device; its keys and queued envelopes cascade with it.
   * @returns whether the device existed
   */
  async remove(accountId: string, deviceId: number): Promise<boolean> {
    const { count } = await this.db.device.deleteMany({ where: { accountId, id: deviceId } });
    return count === 1;
  }

  /** Deletes every linking code that expired before `now`. */
  async deleteExpiredLinks(now: number): Promise<number> {
    const { count } = await this.db.linkCode.deleteMany({ where: { expiresAt: { lte: BigInt(now) } } });
    return count;
  }
}
