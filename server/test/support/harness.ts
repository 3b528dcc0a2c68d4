/**
 * Throwaway homeservers for tests: a real app on a real database (a fresh
 * SQLite file, or a fresh schema of the PostgreSQL named by
 * ZIMCHAT_TEST_DATABASE_URL), listening on 127.0.0.1 port 0.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import pg from "pg";
import request from "supertest";
import { io as connectClient, type Socket } from "socket.io-client";
import type { ClientToServerEvents, Envelope, OutgoingMessage, ServerToClientEvents } from "@zimchat/protocol";
import {
  createLogger,
  defaultRateLimits,
  openHomeserver,
  resolveConfig,
  type Homeserver,
  type RateLimits,
  type ServerConfig,
} from "../../src/index.js";
import { KEMKeyPair, PrivateKey } from "@signalapp/libsignal-client";
import { SignalDevice } from "@zimchat/testing/signal";

/** Which database the suite runs on: "sqlite" unless ZIMCHAT_TEST_DATABASE_URL names PostgreSQL. */
export const testProvider: "sqlite" | "postgresql" = process.env.ZIMCHAT_TEST_DATABASE_URL?.startsWith("postgres")
  ? "postgresql"
  : "sqlite";

/** A fresh, empty database URL and a function that removes it. */
export function freshDatabase(): { url: string; dataDir: string; drop: () => Promise<void> } {
  const dataDir = mkdtempSync(join(tmpdir(), "zimchat-test-"));
  const base = process.env.ZIMCHAT_TEST_DATABASE_URL;
  if (testProvider === "sqlite" || !base) {
    return {
      url: `file:${join(dataDir, "zimchat.db")}`,
      dataDir,
      drop: async () => rmSync(dataDir, { recursive: true, force: true }),
    };
  }
  const schema = `t_${randomBytes(6).toString("hex")}`;
  const url = new URL(base);
  url.searchParams.set("schema", schema);
  return {
    url: url.toString(),
    dataDir,
    drop: async () => {
      rmSync(dataDir, { recursive: true, force: true });
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    },
  };
}

/** A running test homeserver. */
export interface TestServer {
  home: Homeserver;
  url: string;
  config: ServerConfig;
  databaseUrl: string;
  dataDir: string;
  /** Supertest bound to the listening server. */
  http: () => ReturnType<typeof request>;
  /** Registers a new device-1 account with real libsignal keys. */
  register(username?: string): Promise<SignalDevice>;
  /** Connects a socket.io-client as the device and waits until connected. */
  connect(device: SignalDevice): Promise<TestSocket>;
  /** Stops the homeserver but keeps its database and data directory (see {@link restart}). */
  halt(): Promise<void>;
  /** Starts a halted homeserver again on the same database, data directory and port (a fixed `port` only). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** A connected device socket that records what it receives. */
export interface TestSocket {
  socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  received: Envelope[];
  queueEmpty: Promise<void>;
  /** Resolves once `count` envelopes have arrived in total. */
  waitFor(count: number, timeoutMs?: number): Promise<Envelope[]>;
  close(): void;
}

/** Default limits, but enough registrations and linking codes for one test file from one address. */
export const roomyRateLimits: RateLimits = {
  ...defaultRateLimits,
  register: { points: 10_000, durationSeconds: 3600 },
  linkCode: { points: 10_000, durationSeconds: 3600 },
};

let usernameCounter = 0;

/**
 * Starts a homeserver on a fresh database. Pass `logs` to collect its log
 * lines (at the configured level). Plugins go in `overrides.plugins`, as
 * objects or module paths: `startServer({ plugins: [{ use: myPlugin, config: {...} }] })`;
 * they are set up and started before this resolves, and stopped by `stop()`.
 */
export async function startServer(overrides: Partial<ServerConfig> = {}, logs?: string[]): Promise<TestServer> {
  const db = freshDatabase();
  const config = resolveConfig({
    dataDir: db.dataDir,
    databaseUrl: db.url,
    registration: "open",
    port: 0,
    host: "127.0.0.1",
    logLevel: "silent",
    shutdownGraceMs: 2000,
    ...overrides,
  });
  const destination = logs ? { write: (line: string) => void logs.push(line) } : undefined;
  const open = async (): Promise<Homeserver> => {
    const opened = await openHomeserver(config, createLogger(config.logLevel, destination));
    await new Promise<void>((resolve) => opened.httpServer.listen(config.port, "127.0.0.1", resolve));
    return opened;
  };
  const home = await open();
  let halted = false;
  const port = (home.httpServer.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const sockets = new Set<Socket>();

  const server: TestServer = {
    home,
    url,
    config,
    databaseUrl: db.url,
    dataDir: db.dataDir,
    http: () => request(server.home.httpServer),
    register: (username) => registerDevice(server.home.httpServer, username),
    async connect(device) {
      const connected = await connectDevice(url, device);
      sockets.add(connected.socket);
      return connected;
    },
    async halt() {
      for (const s of sockets) s.close();
      sockets.clear();
      halted = true;
      await server.home.close();
    },
    async restart() {
      if (!config.port) throw new Error("restart needs a fixed port");
      server.home = await open();
      halted = false;
    },
    async stop() {
      for (const s of sockets) s.close();
      if (!halted) await server.home.close();
      await db.drop();
    },
  };
  return server;
}

/** Registers a new device-1 account with real libsignal keys on a server (a URL or an HTTP server). */
export async function registerDevice(target: Parameters<typeof request>[0], username?: string): Promise<SignalDevice> {
  const device = new SignalDevice();
  const name = username ?? `user_${process.pid}_${++usernameCounter}`;
  const res = await request(target).post("/v1/accounts").send(device.registration(name));
  if (res.status !== 201) throw new Error(`registration failed: ${res.status} ${JSON.stringify(res.body)}`);
  device.uuid = (res.body as { uuid: string }).uuid;
  return device;
}

/** Connects a socket.io-client (websocket only, no reconnection) as the device and waits until connected. */
export async function connectDevice(url: string, device: SignalDevice): Promise<TestSocket> {
  const socket: Socket<ServerToClientEvents, ClientToServerEvents> = connectClient(url, {
    auth: device.socketAuth,
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
  });
  const received: Envelope[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  socket.on("envelopes", (batch, confirm) => {
    received.push(...batch);
    confirm?.();
    for (const w of waiters.filter((w) => received.length >= w.count)) w.resolve();
  });
  const queueEmpty = new Promise<void>((resolve) => socket.once("queue-empty", resolve));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("connect_error", (error) => (socket.close(), reject(error)));
  });
  return {
    socket,
    received,
    queueEmpty,
    waitFor(count, timeoutMs = 5000) {
      if (received.length >= count) return Promise.resolve(received);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`received ${received.length} of ${count} envelopes`)),
          timeoutMs,
        );
        waiters.push({ count, resolve: () => (clearTimeout(timer), resolve(received)) });
      });
    },
    close: () => socket.close(),
  };
}

/** Fetches a peer's bundle through the server and starts sessions with every device. */
export async function startSession(server: TestServer, from: SignalDevice, to: SignalDevice): Promise<void> {
  const res = await server.http().get(`/v1/keys/${to.uuid}/*`).set("Authorization", from.authHeader);
  if (res.status !== 200) throw new Error(`bundle fetch failed: ${res.status} ${JSON.stringify(res.body)}`);
  await from.processBundle(to.uuid, res.body);
}

/** One outgoing message per listed device of `to`, encrypted by `from`. */
export async function encryptFor(
  from: SignalDevice,
  to: { uuid: string; devices: { deviceId: number; registrationId: number }[] },
  plaintext: string,
): Promise<OutgoingMessage[]> {
  return Promise.all(
    to.devices.map(async (d) => ({
      ...(await from.encrypt(to.uuid, d.deviceId, plaintext)),
      destinationDeviceId: d.deviceId,
      destinationRegistrationId: d.registrationId,
    })),
  );
}

/** A signed public key as the protocol carries it. */
export type SignedKey = { keyId: number; publicKey: string; signature: string };

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/** A signed EC key over a fresh key pair, signed by `signer` (the account's identity key, or a stranger's). */
export function signedEc(signer: PrivateKey, keyId: number): SignedKey {
  const pub = PrivateKey.generate().getPublicKey().serialize();
  return { keyId, publicKey: b64(pub), signature: b64(signer.sign(pub)) };
}

/** A signed Kyber key over a fresh key pair, signed by `signer`. */
export function signedKyber(signer: PrivateKey, keyId: number): SignedKey {
  const pub = KEMKeyPair.generate().getPublicKey().serialize();
  return { keyId, publicKey: b64(pub), signature: b64(signer.sign(pub)) };
}

/**
 * Links a new device to `owner`'s account through the real flow: a linking
 * code, the owner's confirmation with the account identity key sealed to
 * the new device's ephemeral key (libsignal `PublicKey.seal`), the poll,
 * and the registration with keys signed by that identity key.
 * @returns the device (with the owner's identity) and the signed keys it registered
 */
export async function linkDevice(
  server: TestServer,
  owner: SignalDevice,
): Promise<{ device: SignalDevice; signedPreKey: SignedKey; lastResort: SignedKey }> {
  const info = "ZimChat test provisioning";
  const created = await server.http().post("/v1/devices/links");
  if (created.status !== 201) throw new Error(`link code: ${created.status} ${JSON.stringify(created.body)}`);
  const code = created.body.code as string;
  const ephemeral = PrivateKey.generate();
  const sealed = ephemeral.getPublicKey().seal(owner.identity.serialize(), info);
  const confirmed = await server
    .http()
    .put(`/v1/devices/links/${code}`)
    .set("Authorization", owner.authHeader)
    .send({ provisioningMessage: b64(sealed) });
  if (confirmed.status !== 204) throw new Error(`confirm: ${confirmed.status} ${JSON.stringify(confirmed.body)}`);
  const polled = await server.http().get(`/v1/devices/links/${code}`);
  const opened = ephemeral.open(
    new Uint8Array(Buffer.from(polled.body.provisioningMessage as string, "base64")) as Uint8Array<ArrayBuffer>,
    info,
  );
  const device = new SignalDevice(PrivateKey.deserialize(opened));
  const signedPreKey = device.signedPreKey();
  const lastResort = device.kyberPreKey();
  const linked = await server.http().post("/v1/devices").send({
    code,
    password: device.password,
    registrationId: device.registrationId,
    signedPreKey,
    pqLastResortPreKey: lastResort,
  });
  if (linked.status !== 201) throw new Error(`link: ${linked.status} ${JSON.stringify(linked.body)}`);
  device.uuid = linked.body.uuid as string;
  device.deviceId = linked.body.deviceId as number;
  return { device, signedPreKey, lastResort };
}
