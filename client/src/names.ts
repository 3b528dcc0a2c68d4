/**
 * Usernames and account ids. Looking a username up gives its account id
 * (cached). The other way, a sender's username travels inside their
 * encrypted content as a claim; it is shown as theirs only once the server's
 * directory confirms that the username belongs to the sender's account
 * (cached in the device store). A claim that maps to another account, or
 * cannot be checked, is marked unverified. The server learns nothing new:
 * the claim is inside ciphertext, and the check is an ordinary lookup.
 *
 * Users of other servers (federation) are written `name@server`; their
 * look-ups go through this device's homeserver to theirs, and their verified
 * names are kept in that form. Every look-up answer binds the account to the
 * server asked (see federation.ts): an answer naming an account bound to
 * another server is refused.
 */
import type { UsernameLookupResponse } from "@zimchat/protocol";
import { ApiError } from "./errors.js";
import type { ClientContext } from "./client-context.js";
import type { Content } from "./content.js";
import { formatAddress, parseAddress } from "./federation.js";

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A username someone claims in their encrypted content, and whether this device confirmed it. */
export interface SenderName {
  /**
   * The claimed username (verified: the server's directory maps it to the
   * sender's account id), as `name@server` when the sender belongs to
   * another homeserver (federation).
   */
  username: string;
  /** The name the sender chose to show. Never verified: show it only beside the username. */
  displayName?: string;
  /**
   * The username maps to the sender's account (looked up on the server,
   * or cached from an earlier look-up). False: it maps to another account,
   * to none, or the look-up failed; do not show it as their name.
   */
  verified: boolean;
}

/** A name claim as content carries it. */
export type NameClaim = NonNullable<Content["profile"]>;

/** What the store keeps for a verified account: `name:<uuid>`. */
interface CachedName {
  username: string;
  displayName?: string;
}

export class Names {
  /** Claims of names nobody has, found in this process (uuid -> username): not looked up again until restart. */
  private readonly refused = new Map<string, string>();

  constructor(private readonly ctx: Pick<ClientContext, "store" | "api" | "tasks" | "home" | "servers">) {}

  /**
   * The account id for a username, `name@server` or `uuid@server` (cached),
   * or the argument if it is already a UUID.
   * @throws FederationUnavailableError for another server's user when the homeserver does not federate
   * @throws ServerBindingError when the answer names an account bound to another server
   */
  async resolve(user: string): Promise<string> {
    if (uuidPattern.test(user)) return user;
    const address = parseAddress(user);
    const server = await this.ctx.home.normalize(address, user);
    const { store, tasks, servers } = this.ctx;
    if (uuidPattern.test(address.name)) {
      // An account id typed with its server: binds it there (or checks it is bound there).
      await tasks.run(async () => servers.bind(address.name, server));
      return address.name;
    }
    const key = formatAddress(address.name, server);
    const cached = store.getValue(`username:${key}`);
    if (cached) return cached;
    const { uuid } = await this.lookup(address.name, server);
    await tasks.run(async () => {
      servers.bind(uuid, server);
      store.setValue(`username:${key}`, uuid);
      // A look-up is a verification: the account is known by this name from now on.
      if (!store.getValue(`name:${uuid}`))
        store.setValue(`name:${uuid}`, JSON.stringify({ username: key } satisfies CachedName));
    });
    return uuid;
  }

  /** Asks this homeserver's directory (server null) or, through it, another server's. */
  private lookup(username: string, server: string | null): Promise<UsernameLookupResponse> {
    return server === null
      ? this.ctx.api.lookupUsername(username)
      : this.ctx.api.remoteLookupUsername(server, username);
  }

  /** The verified name of an account, if this device has verified one (or looked its username up). */
  nameOf(uuid: string): SenderName | null {
    const cached = this.cached(uuid);
    return cached ? { ...cached, verified: true } : null;
  }

  private cached(uuid: string): CachedName | null {
    const value = this.ctx.store.getValue(`name:${uuid}`);
    if (value) return JSON.parse(value) as CachedName;
    const local = this.ctx.store.getLocal();
    if (uuid === local?.uuid) return { username: local.username };
    // Looked up before names were kept both ways.
    const looked = this.ctx.store.valuesWithPrefix("username:").find(([, id]) => id === uuid);
    return looked ? { username: looked[0].slice("username:".length) } : null;
  }

  /**
   * Checks a claim that account `uuid` has `claim.username`: against the
   * cache, else by looking the username up. Never throws; a failed look-up
   * is an unverified claim (checked again next time).
   */
  async verify(uuid: string, claim: NameClaim): Promise<SenderName> {
    // A user of another server claims their username there: it is checked there, and known as `name@server`.
    const server = this.ctx.servers.remoteServerOf(uuid);
    const username = formatAddress(claim.username, server);
    const displayName = claim.displayName ? { displayName: claim.displayName } : {};
    const { store, servers } = this.ctx;
    const cached = this.cached(uuid);
    let owner = cached?.username === username ? uuid : store.getValue(`username:${username}`);
    if (!owner && this.refused.get(uuid) !== username) {
      try {
        owner = (await this.lookup(claim.username, server)).uuid;
      } catch (error) {
        // Not found is an answer (nobody has that name); anything else (rate limited, offline) is asked again next
        // time.
        if (error instanceof ApiError && error.code === "not_found") this.refused.set(uuid, username);
        return { username, ...displayName, verified: false };
      }
    }
    const verified = owner === uuid;
    // The answer binds its account to the server asked: an account bound to another server is refused (and reported),
    // and nothing is learned from it.
    if (owner && !verified && servers.conflicts(owner, server)) {
      try {
        servers.bind(owner, server);
      } catch {
        // Reported as `serverBindingRefused`.
      }
      return { username, ...displayName, verified: false };
    }
    const update = verified && (cached?.username !== username || cached.displayName !== claim.displayName);
    // Whoever the name belongs to is known by it from now on (the look-up is as good as one this device asked for).
    const learned = owner && !verified && !store.getValue(`name:${owner}`);
    if (update || learned || (owner && !store.getValue(`username:${username}`))) {
      await this.ctx.tasks.run(async () => {
        if (owner && owner !== uuid) servers.bind(owner, server);
        if (owner) store.setValue(`username:${username}`, owner);
        if (update) store.setValue(`name:${uuid}`, JSON.stringify({ username, ...displayName } satisfies CachedName));
        if (learned) store.setValue(`name:${owner}`, JSON.stringify({ username } satisfies CachedName));
      });
    }
    return { username, ...displayName, verified };
  }

  /** Verified names of these accounts (cached only). */
  known(uuids: Iterable<string>): Record<string, SenderName> {
    const out: Record<string, SenderName> = {};
    for (const uuid of uuids) {
      const name = this.nameOf(uuid);
      if (name) out[uuid] = name;
    }
    return out;
  }
}
