/** Usernames and account ids: looked up on the server, cached in the device store. */
import type { ClientContext } from "./client-context.js";

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class Names {
  constructor(private readonly ctx: Pick<ClientContext, "store" | "api">) {}

  /** The account id for a username (cached), or the argument if it is already a UUID. */
  async resolve(user: string): Promise<string> {
    if (uuidPattern.test(user)) return user;
    const cached = this.ctx.store.getValue(`username:${user}`);
    if (cached) return cached;
    const { uuid } = await this.ctx.api.lookupUsername(user);
    this.ctx.store.setValue(`username:${user}`, uuid);
    return uuid;
  }
}
