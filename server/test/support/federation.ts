import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SignalDevice } from "@zimchat/testing/signal";
import type { ServerConfig } from "../../src/config.js";
import { identityFingerprint, loadIdentityKey, rawPublicKey } from "../../src/federation/signing-keys.js";
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

/**
 * A homeserver named after its own loopback address, federating (open) with loopback peers over HTTP.
 * Pass `logs` to collect its log lines (at `overrides.logLevel`).
 */
export async function federated(overrides: Partial<ServerConfig> = {}, logs?: string[]): Promise<FederatedServer> {
  const port = overrides.port || (await freePort());
  const name = `127.0.0.1:${port}`;
  const server = await startServer(
    {
      serverName: name,
      port,
      federation: "open",
      federationInsecurePeers: true,
      ...overrides,
    },
    logs,
  );
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
  logs: { club?: string[]; news?: string[] } = {},
): Promise<FederatedPair> {
  const [club, news] = await Promise.all([federated(overrides.club, logs.club), federated(overrides.news, logs.news)]);
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

/** What one server of a {@link pinnedPair} pins for the other: its real identity fingerprint, or another key's. */
export type Pin = "right" | "wrong";

/** A {@link FederatedPair} in `allowlist` mode, each listing the other pinned, plus both servers' real fingerprints. */
export interface PinnedPair extends FederatedPair {
  /** The fingerprint of each server's own identity key. */
  fingerprints: { club: string; news: string };
}

/**
 * Two servers in `allowlist` mode, each allowing the other as
 * `name=sha256:<hex>`: `pins.club` is what club pins for news, `pins.news`
 * what news pins for club. The identity keys are made first in data
 * directories the servers then use, as `zimchat federation-identity` would.
 */
export async function pinnedPair(
  pins: { club: Pin; news: Pin },
  overrides: { club?: Partial<ServerConfig>; news?: Partial<ServerConfig> } = {},
  logs: { club?: string[]; news?: string[] } = {},
): Promise<PinnedPair> {
  const [clubPort, newsPort] = [await freePort(), await freePort()];
  const names = { club: `127.0.0.1:${clubPort}`, news: `127.0.0.1:${newsPort}` };
  const dirs = {
    club: mkdtempSync(join(tmpdir(), "zimchat-pin-club-")),
    news: mkdtempSync(join(tmpdir(), "zimchat-pin-news-")),
  };
  const fingerprints = {
    club: identityFingerprint(loadIdentityKey(dirs.club).publicKey),
    news: identityFingerprint(loadIdentityKey(dirs.news).publicKey),
  };
  const stranger = identityFingerprint(rawPublicKey(generateKeyPairSync("ed25519").publicKey));
  const pinOf = (pin: Pin, real: string): string => (pin === "right" ? real : stranger);
  const pair = await federatedPair(
    {
      club: {
        port: clubPort,
        dataDir: dirs.club,
        federation: "allowlist",
        federationAllow: [names.news],
        federationPins: { [names.news]: pinOf(pins.club, fingerprints.news) },
        ...overrides.club,
      },
      news: {
        port: newsPort,
        dataDir: dirs.news,
        federation: "allowlist",
        federationAllow: [names.club],
        federationPins: { [names.club]: pinOf(pins.news, fingerprints.club) },
        ...overrides.news,
      },
    },
    logs,
  );
  return {
    ...pair,
    fingerprints,
    stop: async () => {
      await pair.stop();
      for (const dir of Object.values(dirs)) rmSync(dir, { recursive: true, force: true });
    },
  };
}
