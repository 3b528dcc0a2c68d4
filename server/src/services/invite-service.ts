import { createHash, randomBytes } from "node:crypto";
import type { InviteInfo, InviteStore } from "../stores/invite-store.js";

/** A new invite; the token is shown once and only its hash is stored. */
export interface CreatedInvite {
  id: string;
  token: string;
  maxUses: number;
  expiresAt: Date;
}

/** Registration invites for `invite` mode. */
export class InviteService {
  constructor(private readonly invites: InviteStore) {}

  async create(options: { maxUses: number; expiresInMs: number }): Promise<CreatedInvite> {
    const id = randomBytes(4).toString("hex");
    const token = `zc_${randomBytes(24).toString("base64url")}`;
    const expiresAt = new Date(Date.now() + options.expiresInMs);
    await this.invites.create({
      id,
      tokenHash: createHash("sha256").update(token).digest(),
      maxUses: options.maxUses,
      expiresAt,
    });
    return { id, token, maxUses: options.maxUses, expiresAt };
  }

  list(): Promise<InviteInfo[]> {
    return this.invites.list();
  }

  revoke(id: string): Promise<boolean> {
    return this.invites.revoke(id);
  }
}
