/**
 * What the client's modules share: the device store and its task queue, the
 * HTTP API, the Signal backend, the connections, and a narrow way out for
 * events and background work. The facade builds one and hands it down;
 * modules never reach back into the facade.
 */
import { io, type Socket } from "socket.io-client";
import type { ClientToServerEvents, SealedClientToServerEvents, ServerToClientEvents } from "@zimchat/protocol";
import type { ZimClientOptions } from "./client-options.js";
import type { ClientEvents } from "./events.js";
import { HomeServer, ServerBindings } from "./federation.js";
import { GroupStore } from "./groups.js";
import { HttpApi } from "./http-api.js";
import { IdentityChangeNotifier } from "./identity-changes.js";
import { KeyTransparencyChecker, type KeyTransparencyFailure } from "./key-transparency.js";
import { SealedSenderState } from "./sealed.js";
import { defaultSendRetryPolicy, type SendRetryPolicy } from "./send-retry.js";
import { checkServerUrl } from "./server-url.js";
import { SignalBackend } from "./signal/index.js";
import type { DeviceStore, LocalDevice } from "./store/device-store.js";
import { StoreQueue } from "./task-queue.js";
import { trustOnFirstUse } from "./trust.js";

export type AuthenticatedSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
export type SealedSocket = Socket<Record<string, never>, SealedClientToServerEvents>;

/**
 * The client's sockets: the authenticated one (receiving, authenticated sends) and the unauthenticated `/sealed` one.
 */
export class Connections {
  private socket: AuthenticatedSocket | null = null;
  /** Its own connection, so the server cannot tie sealed sends to this device. */
  private sealedSocket: SealedSocket | null = null;

  constructor(private readonly serverUrl: () => string) {}

  /** The authenticated socket, if one was opened (connected or not). */
  get authenticated(): AuthenticatedSocket | null {
    return this.socket;
  }

  /** Whether the authenticated socket is connected (sends then go over sockets, not REST). */
  get connected(): boolean {
    return this.socket?.connected ?? false;
  }

  open(auth: { username: string; password: string }): AuthenticatedSocket {
    const socket: AuthenticatedSocket = io(this.serverUrl(), { auth, transports: ["websocket"] });
    this.socket = socket;
    return socket;
  }

  /** The `/sealed` socket, opened on first use. */
  sealed(): SealedSocket {
    if (!this.sealedSocket) {
      const socket: SealedSocket = io(new URL("/sealed", this.serverUrl()).toString(), {
        forceNew: true,
        transports: ["websocket"],
      });
      // The server closes idle or refused /sealed sockets and they do not reconnect: the next send opens a new one.
      socket.on("disconnect", (reason) => {
        if (reason !== "io server disconnect") return;
        socket.close();
        if (this.sealedSocket === socket) this.sealedSocket = null;
      });
      this.sealedSocket = socket;
    }
    return this.sealedSocket;
  }

  close(): void {
    this.socket?.close();
    this.socket = null;
    this.sealedSocket?.close();
    this.sealedSocket = null;
  }
}

/** Settings the modules read, resolved from {@link ZimClientOptions}. */
export interface ClientSettings {
  sendReceipts: boolean;
  receiptDelayMs: number;
  sealedSender: boolean;
  sendRetry: SendRetryPolicy;
}

/** The shared parts every module is built with. */
export interface ClientContext {
  readonly store: DeviceStore;
  readonly api: HttpApi;
  /** Store work runs one task at a time, group-committed. */
  readonly tasks: StoreQueue;
  readonly signal: SignalBackend;
  readonly sealed: SealedSenderState;
  readonly groups: GroupStore;
  /** Null when key transparency is off. */
  readonly keyLog: KeyTransparencyChecker | null;
  readonly connections: Connections;
  /** This device's homeserver's federation name (`name@server` addresses). */
  readonly home: HomeServer;
  /** Which server each account belongs to (one binding per account id). */
  readonly servers: ServerBindings;
  readonly settings: ClientSettings;
  readonly events: ClientEvents;
  /** Runs work in the background (a failure is a `warning`); `close` waits for it. */
  inBackground(work: Promise<unknown>): void;
}

/** This device, as registered. */
export function localDevice(ctx: Pick<ClientContext, "store">): LocalDevice {
  return ctx.store.getLocal()!;
}

/** This device's credentials for the HTTP API. */
export function credentials(ctx: Pick<ClientContext, "store">): { uuid: string; deviceId: number; password: string } {
  const { uuid, deviceId, password } = localDevice(ctx);
  return { uuid, deviceId, password };
}

/**
 * Checks one key against the log, emitting `keyTransparencyFailure` on failure (unless `emit` is false). Never throws.
 */
export async function checkKeyLog(
  ctx: ClientContext,
  uuid: string,
  identityKey: Uint8Array,
  emit = true,
): Promise<KeyTransparencyFailure | null> {
  // The homeserver's log holds its own users' keys only: another server's user is not in it.
  if (!ctx.keyLog || ctx.servers.remoteServerOf(uuid) !== null) return null;
  const failure = await ctx.keyLog.check(uuid, identityKey);
  if (failure && emit) ctx.events.emit("keyTransparencyFailure", failure);
  return failure;
}

/** Device ids of this account other than this device, as last listed. */
export function otherOwnDevices(ctx: Pick<ClientContext, "store">): number[] {
  const own = JSON.parse(ctx.store.getValue("ownDevices") ?? "[]") as number[];
  return own.filter((d) => d !== localDevice(ctx).deviceId);
}

/** The name this device's messages claim: the account's username and the display name set on this device, if any. */
export function ownProfile(ctx: Pick<ClientContext, "store">): { username: string; displayName?: string } {
  const displayName = ctx.store.getValue("displayName");
  return { username: localDevice(ctx).username, ...(displayName ? { displayName } : {}) };
}

/**
 * Work running in the background (receipts, key upkeep, checks): a failure is a `warning`; `settle` waits for all of
 * it.
 */
export class BackgroundWork {
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly events: ClientEvents) {}

  run(work: Promise<unknown>): void {
    const tracked = work
      .catch((error: unknown) => this.events.emit("warning", error))
      .finally(() => this.running.delete(tracked));
    this.running.add(tracked);
  }

  async settle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }
}

/** Builds the shared parts for a registered device's store. @throws when the store holds no registered device */
export function createClientContext(
  options: ZimClientOptions,
  events: ClientEvents,
): { ctx: ClientContext; identityChanges: IdentityChangeNotifier; background: BackgroundWork } {
  const { store } = options;
  const tasks = new StoreQueue(store);
  const local = store.getLocal();
  if (!local) throw new Error("the store holds no registered device: use ZimClient.register or ZimClient.link");
  // The choice made when this device was registered or linked is kept with it.
  checkServerUrl(local.serverUrl, {
    allowInsecureHttp: options.allowInsecureHttp ?? store.getValue("allowInsecureHttp") === "1",
  });
  const api = new HttpApi(local.serverUrl, { uuid: local.uuid, deviceId: local.deviceId, password: local.password });
  const background = new BackgroundWork(events);
  const identityChanges = new IdentityChangeNotifier(
    store,
    tasks,
    (e) => events.emit("identityChanged", e),
    (error) => events.emit("warning", error),
  );
  // Its state is written through the task queue, never inside a running task (it may be called from one).
  const home = new HomeServer(store, tasks, api);
  const save = (key: string, value: string): void => background.run(tasks.run(async () => store.setValue(key, value)));
  const ctx: ClientContext = {
    store,
    api,
    tasks,
    signal: new SignalBackend(store, options.trustPolicy ?? trustOnFirstUse, (uuid, _blocked, previous) =>
      identityChanges.noticed(uuid, previous),
    ),
    sealed: new SealedSenderState(store, api),
    groups: new GroupStore(store),
    keyLog:
      options.keyTransparency === false
        ? null
        : new KeyTransparencyChecker(
            local.serverUrl,
            () => credentials(ctx),
            store,
            save,
            options.keyTransparency ?? {},
          ),
    connections: new Connections(() => localDevice(ctx).serverUrl),
    home,
    servers: new ServerBindings(store, home, events),
    settings: {
      sendReceipts: options.sendReceipts ?? true,
      receiptDelayMs: options.receiptDelayMs ?? 0,
      sealedSender: options.sealedSender ?? true,
      sendRetry: { ...defaultSendRetryPolicy, ...options.sendRetry },
    },
    events,
    inBackground: (work) => background.run(work),
  };
  return { ctx, identityChanges, background };
}
