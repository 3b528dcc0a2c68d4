/**
 * Federation in the client: `name@server` addresses, the federation name of
 * this device's homeserver (from its server document), and the binding of
 * every account id to exactly one server. The binding is what stops a
 * server from passing its own account off as another server's user: the
 * first server an account was learned from (a look-up, a bundle, its first
 * envelope) is kept in the device store, and any other claim is refused.
 */
import { serverDocumentSchema, serverNameSchema, usernamePattern } from "@zimchat/protocol";
import { ApiError, FederationUnavailableError, ServerBindingError } from "./errors.js";
import type { ClientEvents } from "./events.js";
import type { HttpApi } from "./http-api.js";
import type { DeviceStore } from "./store/device-store.js";
import type { StoreQueue } from "./task-queue.js";

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** How long a 404 for the server document (federation off) is believed before asking again. */
const federationOffRecheckMs = 60_000;

/** A user as typed: a username or account id, and the server it belongs to (null: this device's homeserver). */
export interface Address {
  name: string;
  server: string | null;
}

/**
 * Splits `name@server` (or a bare `name`) at its last `@`. `name` is a
 * username or an account id; `server` must be a server name (lowercase DNS
 * name, optionally with `:port`). Does not decide whether `server` is this
 * device's homeserver (see {@link HomeServer.normalize}).
 * @throws FederationUnavailableError for an address that is not one
 */
export function parseAddress(user: string): Address {
  const at = user.lastIndexOf("@");
  if (at < 0) return { name: user, server: null };
  const name = user.slice(0, at);
  const server = user.slice(at + 1).toLowerCase();
  if (!usernamePattern.test(name) && !uuidPattern.test(name))
    throw new FederationUnavailableError(user, `"${user}": "${name}" is not a username (3 to 32 of a-z, 0-9, _ and .)`);
  if (!serverNameSchema.safeParse(server).success)
    throw new FederationUnavailableError(
      user,
      `"${user}": "${server}" is not a server name (a DNS name, optionally :port)`,
    );
  return { name, server };
}

/** `name@server`, or `name` for this device's homeserver (null). */
export function formatAddress(name: string, server: string | null): string {
  return server === null ? name : `${name}@${server}`;
}

/** Whether a string is written as `name@server` (it may still name this device's homeserver). */
export function isQualifiedAddress(user: string): boolean {
  return user.includes("@");
}

/**
 * This device's homeserver as other servers know it: the `server` of its
 * signed document at `/.well-known/zimchat/server`, fetched once and kept in
 * the device store. A 404 means the homeserver does not federate; that
 * answer is kept for a minute only (an operator may turn federation on).
 */
export class HomeServer {
  private offUntil = 0;

  constructor(
    private readonly store: DeviceStore,
    private readonly tasks: StoreQueue,
    private readonly api: HttpApi,
  ) {}

  /** The homeserver's federation name as last learned, or null (not asked yet, or federation off). */
  cachedName(): string | null {
    return this.store.getValue("homeServerName");
  }

  /** The homeserver's federation name, asked once; null while its federation is off. */
  async name(): Promise<string | null> {
    const cached = this.cachedName();
    if (cached) return cached;
    if (Date.now() < this.offUntil) return null;
    let server: string;
    try {
      server = serverDocumentSchema.parse(await this.api.serverDocument()).server;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.offUntil = Date.now() + federationOffRecheckMs;
        return null;
      }
      throw error;
    }
    await this.tasks.run(async () => this.store.setValue("homeServerName", server));
    return server;
  }

  /** Whether `server` names this homeserver: its federation name, or the host of its URL. */
  isHome(server: string): boolean {
    if (server === this.cachedName()) return true;
    const url = new URL(this.api.serverUrl);
    return server === url.host.toLowerCase() || server === url.hostname.toLowerCase();
  }

  /**
   * The server of a typed address, normalized: null for this homeserver
   * (however it was written), else the other server's name.
   * @throws FederationUnavailableError when the address names another server and this homeserver does not federate
   */
  async normalize(address: Address, typed: string): Promise<string | null> {
    if (address.server === null) return null;
    const home = await this.name();
    if (this.isHome(address.server)) return null;
    if (home === null)
      throw new FederationUnavailableError(
        typed,
        `cannot reach ${typed}: the homeserver ${this.api.serverUrl} does not federate with other servers (federation is off there)`,
      );
    return address.server;
  }
}

/**
 * Which server each account belongs to, as this device bound it (see the
 * file comment). `null` stands for this device's homeserver.
 */
export class ServerBindings {
  constructor(
    private readonly store: DeviceStore,
    private readonly home: HomeServer,
    private readonly events: ClientEvents,
  ) {}

  /**
   * The server an account is bound to: null for this homeserver, a name for
   * another server, undefined when it was never bound. Accounts this device
   * knew before bindings existed (an identity key on record, no binding) and
   * this account itself are this homeserver's.
   */
  serverOf(uuid: string): string | null | undefined {
    const bound = this.store.getServerBinding(uuid);
    if (bound !== null) return bound === "" ? null : bound;
    if (uuid === this.store.getLocal()?.uuid || this.store.getIdentity(uuid)) return null;
    return undefined;
  }

  /** The other server an account belongs to, or null (this homeserver's, or not bound yet). */
  remoteServerOf(uuid: string): string | null {
    return this.serverOf(uuid) ?? null;
  }

  /** Whether `uuid` is bound to another server than `server` (null: this homeserver). */
  conflicts(uuid: string, server: string | null): boolean {
    const bound = this.serverOf(uuid);
    return bound !== undefined && bound !== server;
  }

  /**
   * A server named by an envelope or an event: null for this homeserver
   * (absent, or its own name), else the other server's name.
   */
  normalize(server: string | null | undefined): string | null {
    return !server || this.home.isHome(server) ? null : server;
  }

  /**
   * Binds `uuid` to `server` (null: this homeserver), or checks that it is
   * bound there already. Run inside a store task.
   * @throws ServerBindingError (after emitting `serverBindingRefused`) when it is bound to another server
   */
  bind(uuid: string, server: string | null, envelopeId?: string): void {
    let bound = this.serverOf(uuid);
    if (bound === undefined) {
      const stored = this.store.bindServer(uuid, server ?? "", Date.now());
      bound = stored === "" ? null : stored;
    }
    if (bound === server) return;
    this.events.emit("serverBindingRefused", {
      uuid,
      boundTo: bound,
      claimed: server,
      ...(envelopeId ? { envelopeId } : {}),
    });
    throw new ServerBindingError(uuid, bound, server);
  }
}
