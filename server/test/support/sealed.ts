/**
 * Sealed-sender helpers for server tests: an account's access key, a sender
 * certificate, and a connection to the credential-free `/sealed` namespace.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { SenderCertificate } from "@signalapp/libsignal-client";
import type { SealedClientToServerEvents } from "@zimchat/protocol";
import { io as connectClient, type Socket } from "socket.io-client";
import type { TestServer } from "./harness.js";
import type { SignalDevice } from "@zimchat/testing/signal";

/** Sets the account's access key (and unrestricted flag) through the API; returns the key. */
export async function setAccess(server: TestServer, device: SignalDevice, unrestrictedAccess = false): Promise<Buffer> {
  const accessKey = randomBytes(16);
  const res = await server
    .http()
    .put("/v1/accounts/attributes")
    .set("Authorization", device.authHeader)
    .send({ accessKey: accessKey.toString("base64"), unrestrictedAccess });
  assert.equal(res.status, 204, JSON.stringify(res.body));
  return accessKey;
}

/** The device's sender certificate, from `GET /v1/certificate/delivery`. */
export async function certificateFor(server: TestServer, device: SignalDevice): Promise<SenderCertificate> {
  const res = await server.http().get("/v1/certificate/delivery").set("Authorization", device.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return SenderCertificate.deserialize(Buffer.from(res.body.certificate, "base64"));
}

/** A socket on the `/sealed` namespace, with no credentials at all. */
export async function sealedSocket(
  server: Pick<TestServer, "url">,
): Promise<Socket<Record<string, never>, SealedClientToServerEvents>> {
  const socket: Socket<Record<string, never>, SealedClientToServerEvents> = connectClient(`${server.url}/sealed`, {
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("connect_error", reject);
  });
  return socket;
}
