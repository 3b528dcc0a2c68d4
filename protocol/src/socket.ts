import type { ErrorBody } from "./errors.js";
import type { RemoteDeliveryFailed } from "./federation.js";
import type { AckResponse, Envelope, SendMessagesResponse, SocketSendRequest } from "./messages.js";
import type { MultiRecipientRequest, MultiRecipientResponse, SealedSocketSendRequest } from "./sealed.js";

/**
 * The answer to a client event: the same body the REST route would give, or
 * the same error body with its HTTP status.
 */
export type SocketResult<T> = { ok: true; value: T } | { ok: false; status: number; error: ErrorBody };

/** Credentials in the Socket.IO handshake `auth`: the same as HTTP Basic. */
export interface SocketAuth {
  /** `uuid.deviceId` */
  username: string;
  password: string;
}

/** Events the client emits. Each takes a callback that receives the result. */
export interface ClientToServerEvents {
  /** Send one envelope per destination device; same rules as `PUT /v1/messages/{uuid}`. */
  send: (request: SocketSendRequest, callback: (result: SocketResult<SendMessagesResponse>) => void) => void;
  /** Delete delivered envelopes; same rules as `POST /v1/messages/ack`. */
  ack: (request: { ids: string[] }, callback: (result: SocketResult<AckResponse>) => void) => void;
}

/**
 * Why the server closed a device's connection: a newer connection of the
 * same device, server shutdown, the device was unlinked (its credentials
 * no longer work), or an admin disabled or deleted the account.
 */
export type DisconnectReason = "displaced" | "shutdown" | "removed" | "disabled" | "deleted";

/** Events the server emits. */
export interface ServerToClientEvents {
  /**
   * Envelopes for this device, oldest first. During the drain after
   * connecting, the server waits for the callback before the next batch.
   */
  envelopes: (envelopes: Envelope[], received?: () => void) => void;
  /** The stored queue has been delivered; later envelopes arrive as they are sent. */
  "queue-empty": () => void;
  /** The account's device list changed (a device was linked or removed): fetch `GET /v1/devices`. */
  "devices-changed": () => void;
  /** Sent just before the server closes the connection. */
  closing: (reason: DisconnectReason) => void;
  /**
   * This device's one-time pre-keys are being claimed faster than the
   * server's per-device budget allows (bundles now go out without them):
   * check `GET /v1/keys/count` and refill. At most once a minute.
   */
  "keys-draining": () => void;
  /**
   * A send to another server that was queued (`queued: true`) will not be
   * delivered; sent to the sending device only, again on each connection
   * until the device confirms it with the callback.
   */
  "remote-delivery-failed": (failure: RemoteDeliveryFailed, received: () => void) => void;
}

/**
 * Events on the `/sealed` namespace: sealed-sender sends with no
 * credentials in the handshake. Clients open it on a connection of its own
 * (socket.io-client `forceNew`), so the server cannot tie it to the
 * authenticated one.
 */
export interface SealedClientToServerEvents {
  /** Same rules as `PUT /v1/messages/{uuid}` with `Unidentified-Access-Key`; every message must be `sealed`. */
  send: (request: SealedSocketSendRequest, callback: (result: SocketResult<SendMessagesResponse>) => void) => void;
  /** Same rules as `PUT /v1/messages/multi-recipient` without credentials. */
  "send-multi": (
    request: MultiRecipientRequest,
    callback: (result: SocketResult<MultiRecipientResponse>) => void,
  ) => void;
}
