/**
 * Caps on connections that hold no credentials. Every Engine.IO connection
 * starts as a handshake in progress; it becomes an authenticated device
 * connection when the main namespace accepts its credentials, or a
 * credential-free `/sealed` connection. Authenticated connections are not
 * capped here (the per-device rule, newest wins, bounds them).
 */
export interface ConnectionLimits {
  /** Connections from one address that have not joined a namespace yet (handshakes in progress). @default 16 */
  handshakesPerAddress: number;
  /** Handshakes in progress on this node. @default 256 */
  handshakesTotal: number;
  /** A connection that has joined no namespace after this long is closed (Socket.IO `connectTimeout`). @default 10 s */
  handshakeTimeoutMs: number;
  /** Credential-free `/sealed` connections from one address. @default 32 */
  sealedPerAddress: number;
  /** Credential-free `/sealed` connections on this node. @default 4000 */
  sealedTotal: number;
  /** A `/sealed` connection that sends no event for this long is closed. @default 60 s */
  sealedIdleMs: number;
}

/** The default connection limits. */
export const defaultConnectionLimits: ConnectionLimits = {
  handshakesPerAddress: 16,
  handshakesTotal: 256,
  handshakeTimeoutMs: 10_000,
  sealedPerAddress: 32,
  sealedTotal: 4000,
  sealedIdleMs: 60_000,
};
