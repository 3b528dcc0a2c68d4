import { createServer } from "node:net";
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
