import type {
  AckResponse,
  FetchMessagesResponse,
  KeyCountResponse,
  PreKeyBundleResponse,
  RegisterRequest,
  RegisterResponse,
  ResetIdentityRequest,
  SendMessagesRequest,
  SendMessagesResponse,
  UploadKeysRequest,
  UsernameLookupResponse,
  WhoAmIResponse,
  ErrorBody,
  AccountAttributesRequest,
  ConfirmLinkRequest,
  CreateLinkResponse,
  DeviceListResponse,
  LinkDeviceRequest,
  LinkDeviceResponse,
  LinkStatusResponse,
  MultiRecipientRequest,
  MultiRecipientResponse,
  SenderCertificateResponse,
  TrustRootResponse,
  RemoteSendResponse,
  ServerDocument,
} from "@zimchat/protocol";
import { accessKeyHeader, serverDocumentPath } from "@zimchat/protocol";
import { apiError } from "./errors.js";

/** Credentials of one device. */
export interface DeviceCredentials {
  uuid: string;
  deviceId: number;
  password: string;
}

/** The homeserver's REST API, typed by the protocol package. */
export class HttpApi {
  constructor(
    readonly serverUrl: string,
    private credentials?: DeviceCredentials,
  ) {}

  setCredentials(credentials: DeviceCredentials): void {
    this.credentials = credentials;
  }

  register(body: RegisterRequest): Promise<RegisterResponse> {
    return this.call("POST", "/v1/accounts", body, false);
  }
  resetIdentity(body: ResetIdentityRequest): Promise<void> {
    return this.call("PUT", "/v1/accounts/identity", body);
  }
  whoAmI(): Promise<WhoAmIResponse> {
    return this.call("GET", "/v1/accounts/whoami");
  }
  lookupUsername(username: string): Promise<UsernameLookupResponse> {
    return this.call("GET", `/v1/accounts/username/${encodeURIComponent(username)}`);
  }
  uploadKeys(body: UploadKeysRequest): Promise<void> {
    return this.call("PUT", "/v1/keys", body);
  }
  keyCount(): Promise<KeyCountResponse> {
    return this.call("GET", "/v1/keys/count");
  }
  preKeyBundle(uuid: string, deviceId: number | "*"): Promise<PreKeyBundleResponse> {
    return this.call("GET", `/v1/keys/${uuid}/${deviceId}`);
  }
  sendMessages(uuid: string, body: SendMessagesRequest): Promise<SendMessagesResponse> {
    return this.call("PUT", `/v1/messages/${uuid}`, body);
  }
  fetchMessages(): Promise<FetchMessagesResponse> {
    return this.call("GET", "/v1/messages");
  }
  ack(ids: string[]): Promise<AckResponse> {
    return this.call("POST", "/v1/messages/ack", { ids });
  }

  setAttributes(body: AccountAttributesRequest): Promise<void> {
    return this.call("PUT", "/v1/accounts/attributes", body);
  }
  createLink(): Promise<CreateLinkResponse> {
    return this.call("POST", "/v1/devices/links", undefined, false);
  }
  confirmLink(code: string, body: ConfirmLinkRequest): Promise<void> {
    return this.call("PUT", `/v1/devices/links/${encodeURIComponent(code)}`, body);
  }
  linkStatus(code: string): Promise<LinkStatusResponse> {
    return this.call("GET", `/v1/devices/links/${encodeURIComponent(code)}`, undefined, false);
  }
  linkDevice(body: LinkDeviceRequest): Promise<LinkDeviceResponse> {
    return this.call("POST", "/v1/devices", body, false);
  }
  devices(): Promise<DeviceListResponse> {
    return this.call("GET", "/v1/devices");
  }
  removeDevice(deviceId: number): Promise<void> {
    return this.call("DELETE", `/v1/devices/${deviceId}`);
  }
  trustRoot(): Promise<TrustRootResponse> {
    return this.call("GET", "/v1/certificate/trust-root", undefined, false);
  }
  senderCertificate(): Promise<SenderCertificateResponse> {
    return this.call("GET", "/v1/certificate/delivery");
  }
  /** A sealed-sender send: no credentials, the recipient's access key instead. */
  sendSealed(uuid: string, body: SendMessagesRequest, accessKey: string | null): Promise<SendMessagesResponse> {
    return this.call(
      "PUT",
      `/v1/messages/${uuid}`,
      body,
      false,
      accessKey === null ? {} : { [accessKeyHeader]: accessKey },
    );
  }
  /** The homeserver's signed federation document (404 `not_found` while federation is off). */
  serverDocument(): Promise<ServerDocument> {
    return this.call("GET", serverDocumentPath, undefined, false);
  }
  /** The account id of `username` on another server, asked through this homeserver. */
  remoteLookupUsername(server: string, username: string): Promise<UsernameLookupResponse> {
    return this.call(
      "GET",
      `/v1/federation/${encodeURIComponent(server)}/accounts/username/${encodeURIComponent(username)}`,
    );
  }
  /** Pre-key bundles of an account on another server, fetched through this homeserver. */
  remotePreKeyBundle(server: string, uuid: string, deviceId: number | "*"): Promise<PreKeyBundleResponse> {
    return this.call("GET", `/v1/federation/${encodeURIComponent(server)}/keys/${uuid}/${deviceId}`);
  }
  /** Another server's signed document (its trust root), as this homeserver fetched and verified it. */
  remoteServerDocument(server: string): Promise<ServerDocument> {
    return this.call("GET", `/v1/federation/${encodeURIComponent(server)}/document`);
  }
  /** A send to an account on another server, relayed (or queued) by this homeserver. */
  remoteSendMessages(server: string, uuid: string, body: SendMessagesRequest): Promise<RemoteSendResponse> {
    return this.call("PUT", `/v1/federation/${encodeURIComponent(server)}/messages/${uuid}`, body);
  }
  /**
   * A sealed-sender send to an account on another server: no credentials, the recipient's access key instead. Relayed
   * now or refused (502 `peer_unavailable`): this homeserver never queues it.
   */
  remoteSendSealed(
    server: string,
    uuid: string,
    body: SendMessagesRequest,
    accessKey: string,
  ): Promise<RemoteSendResponse> {
    return this.call("PUT", `/v1/federation/${encodeURIComponent(server)}/messages/${uuid}`, body, false, {
      [accessKeyHeader]: accessKey,
    });
  }
  /** A multi-recipient sealed send; authenticated unless every recipient's access key is given. */
  sendMultiRecipient(body: MultiRecipientRequest, authenticated: boolean): Promise<MultiRecipientResponse> {
    return this.call("PUT", "/v1/messages/multi-recipient", body, authenticated);
  }

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    authenticated = true,
    extraHeaders: Record<string, string> = {},
  ): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json", ...extraHeaders };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (authenticated) {
      if (!this.credentials) throw new Error("this device has no credentials yet");
      const { uuid, deviceId, password } = this.credentials;
      headers.authorization = `Basic ${Buffer.from(`${uuid}.${deviceId}:${password}`).toString("base64")}`;
    }
    const res = await fetch(new URL(path, this.serverUrl), {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) {
      let error: ErrorBody;
      try {
        error = JSON.parse(text) as ErrorBody;
      } catch {
        error = { code: "internal", message: `HTTP ${res.status}` };
      }
      const retryAfter = res.headers.get("retry-after");
      throw apiError(res.status, error, retryAfter ? Number(retryAfter) : undefined);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }
}
