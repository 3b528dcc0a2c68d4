/**
 * A TCP proxy that holds the server's answers back for a while, and can cut
 * every connection at once, dropping what it holds: with a server crash,
 * this is the answer lost in flight after the server committed the request.
 */
import { createServer, connect, type Socket } from "node:net";

/** A running proxy. */
export interface LossyProxy {
  url: string;
  /** Closes every proxied connection now; answers not yet passed on are lost. */
  cut(): void;
  close(): Promise<void>;
}

/** Listens on a free port and forwards to `targetPort`, passing the server's bytes on `delayMs` late (in order). */
export async function startLossyProxy(targetPort: number, delayMs: number): Promise<LossyProxy> {
  const open = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    open.add(client);
    open.add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on("data", (chunk) => upstream.write(chunk));
    // Equal delays fire in order, so the byte stream stays intact.
    upstream.on("data", (chunk) => setTimeout(() => client.destroyed || client.write(chunk), delayMs));
    // An orderly end upstream is passed on after the held bytes; errors cut at once.
    upstream.on("end", () => setTimeout(() => client.end(), delayMs));
    for (const s of [client, upstream]) s.on("error", end).on("close", () => setTimeout(end, delayMs));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const cut = (): void => {
    for (const s of open) s.destroy();
    open.clear();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    cut,
    async close() {
      cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
