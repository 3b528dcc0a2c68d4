/**
 * The bare relay's wire contract. It mirrors the homeserver's socket events
 * (`send` with a result callback, `envelopes` pushed to the recipient, `ack`
 * with a result callback, `queue-empty` after connecting) so the same client
 * harness drives both, and the only difference measured is the server.
 */

/** A relayed payload as pushed to its recipient. */
export interface RelayEnvelope {
  /** Assigned by the relay; returned to the sender and acknowledged by the recipient. */
  id: string;
  content: Uint8Array;
}

/** The answer to a client event. */
export type RelayResult<T> = { ok: true; value: T } | { ok: false; error: string };

/** Events a relay client emits. */
export interface RelayClientToServerEvents {
  send: (request: { to: string; payload: Uint8Array }, callback: (result: RelayResult<{ id: string }>) => void) => void;
  ack: (request: { ids: string[] }, callback: (result: RelayResult<{ deleted: number }>) => void) => void;
}

/** Events the relay emits. */
export interface RelayServerToClientEvents {
  envelopes: (envelopes: RelayEnvelope[]) => void;
  "queue-empty": () => void;
}

/** Handshake `auth` of a relay client: the room it receives on. */
export interface RelayAuth {
  id: string;
}
