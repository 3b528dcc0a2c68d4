import type {
  AccountListResponse,
  CreateInviteRequest,
  CreateInviteResponse,
  InviteInfo,
  RotateCertificateResponse,
  ServerStats,
} from "@zimchat/protocol";
import { HttpError } from "../errors.js";
import type { AdminStore } from "../stores/admin-store.js";
import { startOfDay } from "../util/day.js";
import type { AttachmentService } from "./attachment-service.js";
import type { CertificateService } from "./certificate-service.js";
import type { DeviceService } from "./device-service.js";
import type { InviteService } from "./invite-service.js";
import type { MailboxService } from "./mailbox-service.js";
import { TrustRootOfflineError } from "./key-files.js";

/** Why an admin closed an account's connections. */
export type AccountClosedReason = "disabled" | "deleted";

/** Called after an admin disabled or deleted an account (the gateway closes its connections). */
export type AccountClosedListener = (accountId: string, reason: AccountClosedReason) => void;

const defaultPageSize = 100;

const noAccount = (): HttpError => new HttpError("not_found", "No account has that id or username");

/**
 * What the admin API does: invites, the account list (metadata only),
 * disabling and deleting accounts, removing devices, statistics and
 * rotating the server certificate. The `zimchat invite` commands (offline,
 * on the database) and the admin API share the same InviteService.
 */
export class AdminService {
  private readonly listeners = new Set<AccountClosedListener>();

  constructor(
    private readonly store: AdminStore,
    private readonly invites: InviteService,
    private readonly devices: DeviceService,
    private readonly attachments: AttachmentService,
    private readonly certificates: CertificateService,
    private readonly mailbox: MailboxService,
  ) {}

  /** Subscribes to accounts an admin disabled or deleted. */
  onAccountClosed(listener: AccountClosedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async createInvite(request: Required<CreateInviteRequest>): Promise<CreateInviteResponse> {
    const created = await this.invites.create({
      maxUses: request.maxUses,
      expiresInMs: request.expiresInSeconds * 1000,
    });
    return { ...created, expiresAt: created.expiresAt.toISOString() };
  }

  async listInvites(): Promise<{ invites: InviteInfo[] }> {
    const invites = await this.invites.list();
    return {
      invites: invites.map((i) => ({
        ...i,
        expiresAt: i.expiresAt.toISOString(),
        createdAt: i.createdAt.toISOString(),
        revokedAt: i.revokedAt?.toISOString() ?? null,
      })),
    };
  }

  async revokeInvite(id: string): Promise<void> {
    if (!(await this.invites.revoke(id))) throw new HttpError("not_found", "No unrevoked invite has that id");
  }

  /** One page of accounts ordered by id; `nextCursor` continues after it. */
  async listAccounts(cursor: string | undefined, limit = defaultPageSize): Promise<AccountListResponse> {
    // One more than a page tells whether there is a next one.
    const rows = await this.store.listAccounts(cursor, limit + 1);
    const page = rows.slice(0, limit);
    return {
      accounts: page.map((r) => ({
        id: r.id,
        username: r.username,
        created: r.createdAt.toISOString().slice(0, 10),
        devices: r.devices,
        disabled: r.disabled,
        attachmentBytes: r.attachmentBytes,
      })),
      nextCursor: rows.length > limit ? (page.at(-1)?.id ?? null) : null,
    };
  }

  /**
   * Disables (`true`) or enables the account. A disabled account's devices
   * cannot authenticate and their connections are closed; envelopes sent to
   * it are still queued (and expire as usual), so re-enabling loses nothing.
   */
  async setDisabled(ref: string, disabled: boolean): Promise<void> {
    const id = await this.resolve(ref);
    // Day granularity, like every other date the server keeps.
    if (!(await this.store.setDisabled(id, disabled ? startOfDay() : null))) throw noAccount();
    if (disabled) this.notify(id, "disabled");
  }

  /**
   * Deletes the account: its attachments (rows and blobs), then the account
   * with its devices, keys, queued envelopes and linking codes; the username
   * is free again. Connections are closed and plugins hear `deviceRemoved`
   * (`account_deleted`) for each device.
   */
  async deleteAccount(ref: string): Promise<void> {
    const id = await this.resolve(ref);
    await this.attachments.deleteForAccount(id);
    const deviceIds = await this.store.deleteAccount(id);
    if (!deviceIds) throw noAccount();
    this.notify(id, "deleted");
    await this.devices.accountDeleted(id, deviceIds);
  }

  /** Removes a linked device of the account (the same removal as `DELETE /v1/devices/{id}`). */
  async removeDevice(ref: string, deviceId: number): Promise<void> {
    await this.devices.removeByAdmin(await this.resolve(ref), deviceId);
  }

  /** Row counts plus the connected devices the caller counted (across nodes). */
  async stats(connectedDevices: () => Promise<number>): Promise<ServerStats> {
    const [counts, queuedEnvelopes, connected] = await Promise.all([
      this.store.counts(),
      this.mailbox.queueDepth(),
      connectedDevices(),
    ]);
    return { ...counts, queuedEnvelopes, connectedDevices: connected };
  }

  rotateCertificate(): RotateCertificateResponse {
    try {
      return this.certificates.rotate();
    } catch (error) {
      if (error instanceof TrustRootOfflineError)
        throw new HttpError(
          "trust_root_offline",
          "The trust root's private key is not in the data directory",
          {},
          {},
          { cause: error },
        );
      throw error;
    }
  }

  private async resolve(ref: string): Promise<string> {
    const id = await this.store.resolve(ref);
    if (!id) throw noAccount();
    return id;
  }

  private notify(accountId: string, reason: AccountClosedReason): void {
    for (const listener of this.listeners) listener(accountId, reason);
  }
}
