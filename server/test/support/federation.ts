import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { SignalDevice } from "@zimchat/testing/signal";
import type { ServerConfig } from "../../src/config.js";
import { startServer, type TestServer } from "./harness.js";

/** A homeserver named after its own loopback address. */
export type FederatedServer = TestServer & { name: string };

/** A free loopback port: a server's name (`127.0.0.1:<port>`) is set before it listens. */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** A homeserver named after its own loopback address, federating (open) with loopback peers over HTTP. */
export async function federated(overrides: Partial<ServerConfig> = {}): Promise<FederatedServer> {
  const port = overrides.port || (await freePort());
  const name = `127.0.0.1:${port}`;
  const server = await startServer({
    serverName: name,
    port,
    federation: "open",
    federationInsecurePeers: true,
    ...overrides,
  });
  return Object.assign(server, { name });
}

/** Uploads one-time keys (`count` EC and `count` Kyber) for a device on its server. */
export async function uploadKeys(server: TestServer, device: SignalDevice, count = 5): Promise<void> {
  const res = await server
    .http()
    .put("/v1/keys")
    .set("authorization", device.authHeader)
    .send(device.keyUpload(count, count));
  assert.equal(res.status, 204, JSON.stringify(res.body));
}

/** Two federating servers: alice on club and bob on news, both with one-time keys uploaded. */
export interface FederatedPair {
  club: FederatedServer;
  news: FederatedServer;
  alice: SignalDevice;
  bob: SignalDevice;
  stop(): Promise<void>;
}

export async function federatedPair(
  overrides: { club?: Partial<ServerConfig>; news?: Partial<ServerConfig> } = {},
): Promise<FederatedPair> {
  const [club, news] = await Promise.all([federated(overrides.club), federated(overrides.news)]);
  const alice = await club.register("alice");
  const bob = await news.register("bob");
  await uploadKeys(club, alice);
  await uploadKeys(news, bob);
  return {
    club,
    news,
    alice,
    bob,
    stop: async () => {
      await Promise.all([club.stop(), news.stop()]);
    },
  };
}
