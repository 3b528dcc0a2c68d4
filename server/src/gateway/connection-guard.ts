import type { IncomingMessage } from "node:http";
import type { ConnectionLimits } from "./connection-limits.js";

type State = "handshake" | "sealed" | "authenticated";

/** An Engine.IO connection as far as the guard needs it. */
export interface GuardedConnection {
  request: IncomingMessage;
  once(event: "close", listener: () => void): unknown;
}

/**
 * Counts unauthenticated connections per client address and in total, in
 * memory (per node: every node guards its own descriptors). Addresses are
 * kept only while a connection from them is open and never logged.
 * Refusals are decided from these counters alone, before Socket.IO parses
 * anything from the connection.
 */
export class ConnectionGuard {
  private readonly states = new WeakMap<GuardedConnection, { address: string; state: State }>();
  private readonly perAddress = new Map<string, Record<"handshake" | "sealed", number>>();
  private readonly totals: Record<"handshake" | "sealed", number> = { handshake: 0, sealed: 0 };

  /**
   * @param clientAddress the client's address for a request (honours `trustProxy`)
   * @param refused told the reason of every refusal (metrics)
   */
  constructor(
    readonly limits: ConnectionLimits,
    private readonly clientAddress: (request: IncomingMessage) => string,
    private readonly refused: (reason: "handshake_cap" | "sealed_socket_cap") => void,
  ) {}

  /**
   * Engine.IO's `allowRequest`: refuses a new connection (HTTP 403, before
   * any WebSocket exists) when its address, or the node, already has as
   * many handshakes in progress as allowed. Engine.IO asks only for new
   * connections (requests carrying a session id skip it).
   */
  allowRequest = (
    request: IncomingMessage,
    callback: (error: string | null | undefined, success: boolean) => void,
  ): void => {
    const count = this.perAddress.get(this.clientAddress(request))?.handshake ?? 0;
    if (count >= this.limits.handshakesPerAddress || this.totals.handshake >= this.limits.handshakesTotal) {
      this.refused("handshake_cap");
      callback("too many connections", false);
      return;
    }
    callback(null, true);
  };

  /**
   * A new Engine.IO connection: counted as a handshake until it authenticates or joins `/sealed`, uncounted when it
   * closes.
   */
  opened(connection: GuardedConnection): void {
    const address = this.clientAddress(connection.request);
    this.states.set(connection, { address, state: "handshake" });
    this.add(address, "handshake", 1);
    connection.once("close", () => {
      const entry = this.states.get(connection);
      if (entry && entry.state !== "authenticated") this.add(entry.address, entry.state, -1);
      this.states.delete(connection);
    });
  }

  /** The main namespace accepted the connection's credentials: no longer counted. */
  authenticated(connection: GuardedConnection): void {
    const entry = this.states.get(connection);
    if (!entry || entry.state === "authenticated") return;
    this.add(entry.address, entry.state, -1);
    entry.state = "authenticated";
  }

  /**
   * A connection asks to join `/sealed`. An authenticated connection is not
   * counted again; otherwise it moves from handshake to sealed when its
   * address and the node are under their caps.
   * @returns false when it must be refused
   */
  admitSealed(connection: GuardedConnection): boolean {
    const entry = this.states.get(connection);
    if (!entry) return false;
    if (entry.state !== "handshake") return true;
    const count = this.perAddress.get(entry.address)?.sealed ?? 0;
    if (count >= this.limits.sealedPerAddress || this.totals.sealed >= this.limits.sealedTotal) {
      this.refused("sealed_socket_cap");
      return false;
    }
    this.add(entry.address, "handshake", -1);
    entry.state = "sealed";
    this.add(entry.address, "sealed", 1);
    return true;
  }

  private add(address: string, state: "handshake" | "sealed", delta: number): void {
    this.totals[state] += delta;
    const counts = this.perAddress.get(address) ?? { handshake: 0, sealed: 0 };
    counts[state] += delta;
    if (counts.handshake === 0 && counts.sealed === 0) this.perAddress.delete(address);
    else this.perAddress.set(address, counts);
  }
}
