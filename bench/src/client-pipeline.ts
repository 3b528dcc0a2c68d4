/**
 * The client pipeline: one-way messages per second through ZimClient send ->
 * homeserver -> ZimClient receive (SQLite device stores on disk), next to
 * raw libsignal encrypt + decrypt with in-memory stores, in the same run.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  SignalMessage,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
  PreKeySignalMessage,
  CiphertextMessageType,
} from "@signalapp/libsignal-client";
import { SqliteDeviceStore, ZimClient } from "@zimchat/client";
import { MemoryParty } from "@zimchat/testing/signal";
import { startServer } from "./server-process.js";
import { median } from "./stats.js";

/** Options for {@link measureClientPipeline}. */
export interface ClientPipelineOptions {
  serverUrl: string;
  /** Where the device stores go (deleted afterwards). */
  tmpDir: string;
  /** Messages per round. */
  messages: number;
  /** Rounds of each (interleaved raw, sdk, raw, sdk, ...). */
  rounds: number;
  /** Sends in flight through the SDK. */
  window: number;
}

/** Rates per round and their medians. */
export interface ClientPipelineResult {
  rawRounds: number[];
  sdkRounds: number[];
  rawMsgsPerSecond: number;
  sdkMsgsPerSecond: number;
  ratio: number;
  plaintextBytes: number;
}

const text = "x".repeat(280); // with the content header, one 320-byte padded block pair, like a short chat message

/** Raw libsignal: one-way encrypt + decrypt of `count` messages on an established session, in memory. */
async function rawRound(count: number): Promise<number> {
  const alice = new MemoryParty("a11ce000-0000-4000-8000-00000000000a", 1001);
  const bob = new MemoryParty("b0b00000-0000-4000-8000-00000000000b", 1002);
  await processPreKeyBundle(bob.bundle(), bob.address, alice.address, alice.sessions, alice.identity);
  const plaintext = new Uint8Array(
    Buffer.from(JSON.stringify({ v: 1, text, timestamp: Date.now() })),
  ) as Uint8Array<ArrayBuffer>;
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const message = await signalEncrypt(plaintext, bob.address, alice.address, alice.sessions, alice.identity);
    if (message.type() === CiphertextMessageType.PreKey) {
      await signalDecryptPreKey(
        PreKeySignalMessage.deserialize(message.serialize()),
        alice.address,
        bob.address,
        bob.sessions,
        bob.identity,
        bob.preKeys,
        bob.signedPreKeys,
        bob.kyberPreKeys,
      );
    } else {
      await signalDecrypt(
        SignalMessage.deserialize(message.serialize()),
        alice.address,
        bob.address,
        bob.sessions,
        bob.identity,
      );
    }
  }
  return count / ((performance.now() - started) / 1000);
}

/** Through the SDK and the homeserver: Alice sends `count` texts, Bob receives them all. */
async function sdkRound(options: ClientPipelineOptions, round: number): Promise<number> {
  const dir = mkdtempSync(join(options.tmpDir, "client-pipeline-"));
  const register = (name: string): Promise<ZimClient> =>
    ZimClient.register({
      serverUrl: options.serverUrl,
      username: `${name}_${process.pid}_${round}`,
      store: new SqliteDeviceStore(join(dir, `${name}.db`)),
      sendReceipts: false,
    });
  const alice = await register("alice");
  const bob = await register("bob");
  try {
    await alice.connect();
    await bob.connect();
    let received = 0;
    let done: () => void = () => {};
    const all = new Promise<void>((resolve) => (done = resolve));
    // Listening before the warm-up: when it arrived before the listener, the count stopped one short and the round
    // never ended.
    bob.on("message", () => {
      received += 1;
      if (received === options.messages + 1) done();
    });
    await alice.sendText(bob.local.username, "warm-up: starts the session");
    const started = performance.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < options.messages) {
        next += 1;
        await alice.sendText(bob.local.username, text);
      }
    };
    await Promise.all(Array.from({ length: options.window }, worker));
    await all;
    return options.messages / ((performance.now() - started) / 1000);
  } finally {
    await alice.close();
    await bob.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Interleaved rounds of raw libsignal and the SDK pipeline; medians and their ratio. */
export async function measureClientPipeline(
  options: ClientPipelineOptions,
  log: (line: string) => void,
): Promise<ClientPipelineResult> {
  const rawRounds: number[] = [];
  const sdkRounds: number[] = [];
  for (let round = 0; round < options.rounds; round++) {
    rawRounds.push(await rawRound(options.messages));
    sdkRounds.push(await sdkRound(options, round));
    log(
      `client pipeline round ${round + 1}: raw libsignal ${rawRounds.at(-1)!.toFixed(0)} msgs/s, SDK ${sdkRounds.at(-1)!.toFixed(0)} msgs/s`,
    );
  }
  const rawMsgsPerSecond = median(rawRounds);
  const sdkMsgsPerSecond = median(sdkRounds);
  return {
    rawRounds,
    sdkRounds,
    rawMsgsPerSecond,
    sdkMsgsPerSecond,
    ratio: sdkMsgsPerSecond / rawMsgsPerSecond,
    plaintextBytes: 320,
  };
}

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const homeserverScript = fileURLToPath(new URL("./cli/main.js", import.meta.resolve("@zimchat/server")));

/**
 * Starts its own homeserver child (default SQLite, synchronous=FULL) and measures the client pipeline against it:
 * 2,000 messages a round (`quick`: 500), 3 rounds (`quick`: 2) unless `rounds` is given.
 */
export async function runClientPipeline(
  quick: boolean,
  log: (line: string) => void,
  rounds?: number,
): Promise<ClientPipelineResult> {
  const tmpDir = `${repoRoot}.bench-tmp/client-${process.pid}-${Date.now()}`;
  mkdirSync(`${tmpDir}/homeserver-data`, { recursive: true });
  const server = await startServer({
    name: "homeserver (client pipeline)",
    script: homeserverScript,
    args: [
      "serve",
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--data-dir",
      `${tmpDir}/homeserver-data`,
      "--registration",
      "open",
      "--rate-limits",
      "off",
      "--log-level",
      "warn",
    ],
    cwd: repoRoot,
  });
  try {
    return await measureClientPipeline(
      { serverUrl: server.url, tmpDir, messages: quick ? 500 : 2000, rounds: rounds ?? (quick ? 2 : 3), window: 128 },
      log,
    );
  } finally {
    await server.stop();
    rmSync(tmpDir, { recursive: true, force: true });
  }
}

/** The report section for the client pipeline. */
export function formatClientPipeline(r: ClientPipelineResult): string {
  const rounds = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(", ");
  return [
    "Client pipeline, one way: ZimClient send -> homeserver -> ZimClient receive (SQLite device stores, synchronous=FULL),",
    "next to raw libsignal encrypt + decrypt in memory (same plaintext, same process), interleaved rounds, medians",
    `  raw libsignal         ${r.rawMsgsPerSecond.toFixed(0).padStart(7)} msgs/s   (rounds: ${rounds(r.rawRounds)})`,
    `  ZimClient pipeline    ${r.sdkMsgsPerSecond.toFixed(0).padStart(7)} msgs/s   (rounds: ${rounds(r.sdkRounds)})`,
    `  ratio                 ${r.ratio.toFixed(2).padStart(7)}          target >= 0.5   ${r.ratio >= 0.5 ? "PASS" : "MISS"}`,
  ].join("\n");
}
