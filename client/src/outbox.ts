/**
 * Sending: content is padded and encrypted for every device of the
 * recipient (sealed when their access key is known), delivered over the
 * socket or REST with one idempotency key per send (retried until
 * answered), and re-encrypted after the server's 401/409/410/429 answers.
 * Sent transcripts go to this account's other devices.
 *
 * A user of another server (federation) gets the same ciphertexts through
 * this homeserver's remote send route, with the same 409/410 repair loop:
 * sealed (no credentials, their access key) when their access key is known
 * and their server's trust root is the pinned one, else authenticated. When
 * their server is unreachable this homeserver queues an authenticated send
 * (`queued`): the content is kept in the device store until a
 * `remote-delivery-failed` event asks for a re-send (see remote-delivery.ts).
 * A sealed send is never queued (502 `peer_unavailable`): it falls back to
 * an authenticated send, as a sealed send does after a 429, and that one may
 * be queued. The homeserver then learns who sent it, as it does for every
 * authenticated send; the alternative (failing the send) loses messages
 * whenever a peer is briefly down.
 */
import { randomUUID } from "node:crypto";
import type { MultiRecipientResponse, OutgoingMessage, SendMessagesResponse, SocketResult } from "@zimchat/protocol";
import { PendingRemoteSends } from "./remote-delivery.js";
import { localDevice, otherOwnDevices, ownProfile, type ClientContext } from "./client-context.js";
import { encodeContent, type Content } from "./content.js";
import {
  ApiError,
  apiError,
  SealedSendingPausedError,
  TrustRootMismatchError,
  UntrustedIdentityError,
} from "./errors.js";
import { newIdempotencyKey, withSendRetry } from "./send-retry.js";
import type { Sessions } from "./sessions.js";
import type { SenderCertificate } from "./signal/index.js";
import type { StoredMessage } from "./store/device-store.js";

/** What a direct send carries besides its envelope fields. */
export type MessageBody = Pick<Content, "text" | "attachment">;

/**
 * The answer to a send. `queued`: the recipient is on another server that
 * did not answer in time; this homeserver holds the envelopes in its outbox
 * (no envelope ids yet) and retries.
 */
export type SendResult = SendMessagesResponse & { queued?: boolean };

export class Outbox {
  /**
   * Trust-root changes already reported (by server, "" for the homeserver, and presented fingerprint), so
   * `trustRootChanged` fires once per change.
   */
  private readonly reportedTrustRoots = new Set<string>();
  /** Sends to other servers that their homeserver queued, kept until delivered or given up. */
  readonly pendingRemote: PendingRemoteSends;

  /**
   * @param ownDevicesChanged called when the server says this account's device list is not what this device thought
   */
  constructor(
    private readonly ctx: ClientContext,
    private readonly sessions: Sessions,
    private readonly ownDevicesChanged: () => Promise<unknown>,
  ) {
    this.pendingRemote = new PendingRemoteSends(ctx);
  }

  /**
   * Sends a text or attachment to a user (their account id), records it, and sends the transcript to this account's
   * other devices.
   */
  async sendDirect(
    uuid: string,
    body: MessageBody,
  ): Promise<{ timestamp: number; envelopes: SendMessagesResponse["envelopes"]; queued?: boolean }> {
    const timestamp = Date.now();
    const content: Content = {
      v: 1,
      id: randomUUID(),
      timestamp,
      ...body,
      accessKey: localDevice(this.ctx).accessKey,
      profile: ownProfile(this.ctx),
    };
    const record = (): void => this.ctx.store.addMessage(this.outgoingRecord(randomUUID(), uuid, content));
    const result = await this.sendContent(uuid, content, record);
    const server = this.ctx.servers.remoteServerOf(uuid);
    await this.syncToOwnDevices({ ...content, sync: { destination: uuid, ...(server ? { server } : {}) } });
    return { timestamp, envelopes: result.envelopes, ...(result.queued ? { queued: true } : {}) };
  }

  /** The history record of a message this device sent. */
  outgoingRecord(id: string, peer: string, content: Content): StoredMessage {
    const local = localDevice(this.ctx);
    return {
      id,
      peer,
      direction: "out",
      author: local.uuid,
      senderDeviceId: local.deviceId,
      text: content.text ?? "",
      timestamp: content.timestamp,
      storedAt: Date.now(),
      ...(content.attachment ? { attachment: content.attachment } : {}),
    };
  }

  /** Sends a sent transcript (or other sync content) to this account's other devices, if any. */
  async syncToOwnDevices(content: Content): Promise<void> {
    if (!otherOwnDevices(this.ctx).length) return;
    await this.sendContent(localDevice(this.ctx).uuid, content);
  }

  /**
   * Encrypts and sends content to every device of `uuid` (for this account:
   * its other devices), sealed when the recipient's access key is known,
   * retrying after 409/410. `record` runs in the same store transaction as
   * the first encryption. A user of another server gets it authenticated
   * through the remote send route; a queued send keeps `content` for a re-send.
   */
  async sendContent(uuid: string, content: Content, record?: () => void): Promise<SendResult> {
    const { store, tasks, sealed, servers } = this.ctx;
    const server = servers.remoteServerOf(uuid);
    const known = store.getIdentity(uuid);
    if (known?.blocked) throw new UntrustedIdentityError(uuid);
    const padded = encodeContent(content);
    // Set when a sealed send was rate limited (429): this content goes authenticated, as on a 401.
    let unsealed = false;
    // One key for the whole send: nothing is stored on a 401/409/410, so a corrected retry may reuse it. A send to
    // another server is relayed under an id derived from the key, which the servers on the way may remember with its
    // refusal: a corrected retry there gets a new key.
    let idempotencyKey = newIdempotencyKey();
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0 && server !== null) idempotencyKey = newIdempotencyKey();
      const seal = unsealed ? null : await this.sealingFor(uuid, server);
      const messages = await tasks.run(async () => {
        const encrypted = await this.sessions.encryptForAll(uuid, padded, seal?.certificate ?? null);
        if (attempt === 0) record?.();
        return encrypted;
      });
      try {
        // Sealed only if every message was sealed (a stale certificate is not used: see encryptForAll).
        const accessKey = seal && messages.every((m) => m.type === "sealed") ? seal.accessKey : null;
        if (server !== null)
          return await this.deliverRemote(server, uuid, messages, idempotencyKey, content, accessKey);
        return await this.deliver(uuid, messages, accessKey, idempotencyKey);
      } catch (error) {
        if (!(error instanceof ApiError) || attempt >= 3) throw error;
        if (error.code === "peer_unavailable" && seal && server !== null) {
          // The other server did not answer a sealed send (never queued): authenticated, which this homeserver queues.
          unsealed = true;
          continue;
        }
        if (error.code === "unauthorized" && seal) {
          // The access key no longer works (changed): send authenticated from now on.
          await tasks.run(async () => sealed.forgetAccessKey(uuid));
        } else if (error.code === "rate_limited" && seal) {
          // The sealed allowance is used up (the server limits sealed sends per recipient and address): send
          // authenticated.
          unsealed = true;
        } else if (error.code === "mismatched_devices" || error.code === "stale_devices") {
          await tasks.run(async () => this.sessions.fixDevices([{ uuid, ...error.body }]));
          // This account's device list changed under us: learn it (and tell the app) before retrying.
          if (uuid === localDevice(this.ctx).uuid) await this.ownDevicesChanged();
        } else {
          throw error;
        }
      }
    }
  }

  /**
   * The certificate and access key to seal with, or null to send authenticated (own devices, unknown key, no
   * certificate).
   */
  private async sealingFor(
    uuid: string,
    server: string | null,
  ): Promise<{ certificate: SenderCertificate; accessKey: string } | null> {
    if (!this.ctx.settings.sealedSender || uuid === localDevice(this.ctx).uuid) return null;
    const accessKey = this.ctx.sealed.accessKeyOf(uuid);
    if (!accessKey) return null;
    if (server !== null) {
      try {
        // Another server's changed trust root holds sealed sends to its users, as the homeserver's does.
        await this.checkRemoteTrustRoot(server);
      } catch (error) {
        if (error instanceof SealedSendingPausedError && this.ctx.sealed.unsealedAllowedTo(server)) return null;
        throw error;
      }
    }
    try {
      const certificate = await this.senderCertificate();
      return certificate ? { certificate, accessKey } : null;
    } catch (error) {
      // Sending authenticated instead tells the server who sends: only when the app chose that.
      if (error instanceof SealedSendingPausedError && this.ctx.sealed.unsealedAllowed()) return null;
      throw error;
    }
  }

  /**
   * This device's sender certificate; a trust-root change is reported once
   * (`trustRootChanged`) and refused with {@link SealedSendingPausedError}.
   */
  async senderCertificate(): Promise<SenderCertificate | null> {
    try {
      return await this.ctx.sealed.certificate();
    } catch (error) {
      if (!(error instanceof TrustRootMismatchError)) throw error;
      throw this.trustRootChanged(error);
    }
  }

  /**
   * Pins another server's trust root on first use, and compares it with the
   * pinned one when due (hourly, or `force`); a change is reported once
   * (`trustRootChanged` with `server`) and refused with
   * {@link SealedSendingPausedError}.
   */
  async checkRemoteTrustRoot(server: string, force = false): Promise<void> {
    const { sealed, tasks } = this.ctx;
    if (!force && !sealed.remoteCheckDue(server)) return;
    const presented = await sealed.presentedRemoteTrustRoot(server);
    try {
      await tasks.run(async () => sealed.pinRemoteTrustRoot(server, presented));
    } catch (error) {
      if (!(error instanceof TrustRootMismatchError)) throw error;
      throw this.trustRootChanged(error);
    }
  }

  /** Reports a trust-root change once (`trustRootChanged`), and gives the error that holds sealed sends. */
  private trustRootChanged(error: TrustRootMismatchError): SealedSendingPausedError {
    const { sealed, events } = this.ctx;
    const { server } = error;
    const key = `${server ?? ""} ${error.presented}`;
    if (!this.reportedTrustRoots.has(key)) {
      this.reportedTrustRoots.add(key);
      events.emit("trustRootChanged", {
        pinned: error.pinned,
        presented: error.presented,
        unsealedAllowed: server === undefined ? sealed.unsealedAllowed() : sealed.unsealedAllowedTo(server),
        ...(server === undefined ? {} : { server }),
      });
    }
    return new SealedSendingPausedError(error.pinned, error.presented, server);
  }

  /** A new trust root was pinned (another server's, or the homeserver's when absent): a change is reported again. */
  trustRootAccepted(server?: string): void {
    for (const key of this.reportedTrustRoots)
      if (key.startsWith(`${server ?? ""} `)) this.reportedTrustRoots.delete(key);
  }

  /**
   * Sends the same ciphertexts with the same key until answered (see send-retry.ts), over the socket when connected.
   */
  private async deliver(
    uuid: string,
    messages: OutgoingMessage[],
    accessKey: string | null,
    idempotencyKey: string,
  ): Promise<SendMessagesResponse> {
    const { api, connections, settings } = this.ctx;
    if (!messages.length) throw noDevices();
    const timeoutMs = settings.sendRetry.attemptTimeoutMs;
    return withSendRetry(async () => {
      if (accessKey !== null) {
        if (connections.connected) {
          const request = { destination: uuid, messages, accessKey, idempotencyKey };
          const result = (await connections
            .sealed()
            .timeout(timeoutMs)
            .emitWithAck("send", request)) as SocketResult<SendMessagesResponse>;
          if (result.ok) return result.value;
          throw apiError(result.status, result.error);
        }
        return api.sendSealed(uuid, { messages, idempotencyKey }, accessKey);
      }
      const socket = connections.authenticated;
      if (socket?.connected) {
        const result = (await socket
          .timeout(timeoutMs)
          .emitWithAck("send", { destination: uuid, messages, idempotencyKey })) as SocketResult<SendMessagesResponse>;
        if (result.ok) return result.value;
        throw apiError(result.status, result.error);
      }
      return api.sendMessages(uuid, { messages, idempotencyKey });
    }, settings.sendRetry);
  }

  /**
   * Sends to a user of another server through this homeserver (REST; the same idempotency rules), keeping the content
   * of a send it queued so that a later `remote-delivery-failed` can be repaired and re-sent.
   */
  private async deliverRemote(
    server: string,
    uuid: string,
    messages: OutgoingMessage[],
    idempotencyKey: string,
    content: Content,
    accessKey: string | null,
  ): Promise<SendResult> {
    const { api, settings, tasks } = this.ctx;
    if (!messages.length) throw noDevices();
    const body = { messages, idempotencyKey };
    const response = await withSendRetry(async () => {
      if (accessKey === null) return api.remoteSendMessages(server, uuid, body);
      try {
        return await api.remoteSendSealed(server, uuid, body, accessKey);
      } catch (error) {
        // Not retried here: the caller falls back to an authenticated send, which this homeserver can queue.
        if (error instanceof ApiError && error.code === "peer_unavailable") throw new NotRetried(error);
        throw error;
      }
    }, settings.sendRetry).catch((error: unknown) => {
      throw error instanceof NotRetried ? error.error : error;
    });
    if (response.queued) await tasks.run(async () => this.pendingRemote.remember(response.id, uuid, server, content));
    return {
      serverTimestamp: response.serverTimestamp ?? Date.now(),
      envelopes: response.envelopes ?? [],
      ...(response.queued ? { queued: true } : {}),
    };
  }

  /**
   * Delivers one multi-recipient sealed message: sealed when every access key is known, else authenticated (still
   * stored without a sender). `remoteRecipients` names the recipients on other servers (federation), which this
   * homeserver relays one by one and answers for in `remote`.
   */
  async deliverMulti(
    recipients: string[],
    message: string,
    idempotencyKey: string,
    remoteRecipients: { uuid: string; server: string }[] = [],
  ): Promise<MultiRecipientResponse> {
    const { api, connections, settings, sealed } = this.ctx;
    const accessKeys = recipients.map((uuid) => ({ uuid, accessKey: sealed.accessKeyOf(uuid) }));
    const allKnown = accessKeys.every((k): k is { uuid: string; accessKey: string } => !!k.accessKey);
    const remote = remoteRecipients.length ? { remoteRecipients } : {};
    if (allKnown && settings.sealedSender) {
      const request = { message, accessKeys, idempotencyKey, ...remote };
      try {
        return await withSendRetry(async () => {
          if (connections.connected) {
            const result = (await connections
              .sealed()
              .timeout(settings.sendRetry.attemptTimeoutMs)
              .emitWithAck("send-multi", request)) as SocketResult<MultiRecipientResponse>;
            if (result.ok) return result.value;
            throw apiError(result.status, result.error);
          }
          return api.sendMultiRecipient(request, false);
        }, settings.sendRetry);
      } catch (error) {
        // Sealed sends rate limited (429): the same message, authenticated, as below.
        if (!(error instanceof ApiError && error.code === "rate_limited")) throw error;
      }
    }
    // Some access key is unknown: authenticated, still stored without a sender.
    return withSendRetry(
      () => api.sendMultiRecipient({ message, idempotencyKey, ...remote }, true),
      settings.sendRetry,
    );
  }
}

/** Carries an error through {@link withSendRetry} without a retry. */
class NotRetried extends Error {
  override name = "NotRetried";

  constructor(readonly error: ApiError) {
    super(error.message, { cause: error });
  }
}

/** A send that names no device: answered like the server's 409, so the caller fetches the devices and retries. */
function noDevices(): ApiError {
  return new ApiError(409, { code: "mismatched_devices", message: "no devices", missingDevices: [], extraDevices: [] });
}
