/**
 * @zimchat/plugin-sdk/server: the typed API of in-process homeserver plugins.
 *
 * A plugin sees metadata only: account and device ids, key counts, sizes and
 * times. It never sees plaintext (the server never has any), ciphertext,
 * passwords or client addresses. It can observe events, refuse a send or a
 * registration with its own code, add HTTP routes under `/plugins/<name>/`,
 * and keep state in its own namespaced storage.
 *
 * @example
 * import { definePlugin } from "@zimchat/plugin-sdk/server";
 * import { z } from "zod";
 *
 * export default definePlugin({
 *   name: "hello",
 *   configSchema: z.object({ greeting: z.string().default("hi") }),
 *   setup(ctx, config) {
 *     return {
 *       accountRegistered: (e) => ctx.logger.info({ account: e.accountId }, config.greeting),
 *     };
 *   },
 * });
 *
 * @packageDocumentation
 */
import type { z } from "zod";

/** Plugin names: lowercase, used in routes (`/plugins/<name>/`), storage and logs. */
export const pluginNamePattern = /^[a-z][a-z0-9-]{1,31}$/;

/** A refusal code chosen by a plugin (answered as `pluginCode`). */
export const refusalCodePattern = /^[a-z][a-z0-9_]{2,63}$/;

/** An authenticated device, as plugins see it. */
export interface DeviceRef {
  accountId: string;
  deviceId: number;
}

/** `accountRegistered`: a new account and its primary device (device 1) exist. */
export interface AccountRegisteredEvent {
  accountId: string;
  username: string;
  /**
   * The account's identity public key (serialized libsignal PublicKey, base64). Public by design: it is in every
   * bundle.
   */
  identityKey: string;
  /** Milliseconds since the epoch. */
  time: number;
}

/** `beforeAccountRegistered`: someone asks to create an account. */
export interface AccountRegistrationCandidate {
  username: string;
}

/** `deviceLinked`: a new device was added to an existing account. */
export interface DeviceLinkedEvent extends DeviceRef {
  time: number;
}

/**
 * `deviceRemoved`: a device was unlinked, removed by an identity reset or
 * by an admin, or its account was deleted by an admin (one event per device).
 */
export interface DeviceRemovedEvent extends DeviceRef {
  reason: "unlinked" | "identity_reset" | "removed_by_admin" | "account_deleted";
  time: number;
}

/** `keysUploaded`: a device replaced some of its published keys. Counts only, never the keys. */
export interface KeysUploadedEvent extends DeviceRef {
  /** One-time EC pre-keys uploaded (0 when none). */
  ecPreKeys: number;
  /** One-time Kyber pre-keys uploaded. */
  kyberPreKeys: number;
  signedPreKey: boolean;
  lastResortKey: boolean;
  time: number;
}

/** `identityKeyChanged`: the account's identity key was replaced (a reset from the primary device). */
export interface IdentityKeyChangedEvent {
  accountId: string;
  /** The new identity public key (base64). */
  identityKey: string;
  /** The replaced identity public key (base64). */
  previousIdentityKey: string;
  time: number;
}

/**
 * `beforeEnvelopeAccepted`: a send to one recipient account is about to be
 * committed. Called once per recipient account of a send (a multi-recipient
 * group send asks once per member); a refusal of any refuses the whole send.
 */
export interface EnvelopeCandidate {
  /**
   * The authenticated sender, or null for a sealed-sender send without
   * credentials. With `originServer` set, an account on that server.
   */
  sender: DeviceRef | null;
  /** Federation: the homeserver that relayed this send (null for a send from this server's own users). */
  originServer: string | null;
  recipientAccountId: string;
  /** Devices of the recipient that get a copy. */
  deviceCount: number;
  /** Ciphertext bytes for this recipient, all devices together. */
  bytes: number;
  /** The server does not learn the sender from the envelope (sealed sender). */
  sealed: boolean;
  /** One recipient, or one of several in a multi-recipient (group) send. */
  kind: "single" | "multi_recipient";
}

/** `envelopeDelivered`: a device acknowledged envelopes, so they were delivered and deleted. */
export interface EnvelopeDeliveredEvent extends DeviceRef {
  /** How many envelopes this acknowledgement deleted. */
  count: number;
  time: number;
}

/** What a veto hook answers to refuse. Returning nothing (or `undefined`) accepts. */
export interface Refusal {
  /** Machine-readable, matching {@link refusalCodePattern}; the client sees it as `pluginCode`. */
  code: string;
  /** Human-readable, shown to the user. */
  reason: string;
  /** When the refusal is a quota: seconds until a retry may succeed. */
  retryAfterSeconds?: number;
}

type MaybePromise<T> = T | Promise<T>;

/**
 * The hooks a plugin may implement. Every hook runs within the plugin's time
 * budget; what a failure (a throw or a timeout) means depends on the hook:
 *
 * | hook | kind | on failure |
 * |---|---|---|
 * | `start` | lifecycle | the server does not start (the error names the plugin) |
 * | `stop` | lifecycle | logged; shutdown continues |
 * | `beforeAccountRegistered` | veto | fails **closed**: the registration is refused (503 `unavailable`) |
 * | `beforeEnvelopeAccepted` | veto | fails **open**: the send is accepted, delivery never waits on a broken plugin |
 * | `accountRegistered`, `deviceLinked`, `deviceRemoved`, `keysUploaded`, `identityKeyChanged` | observer, awaited
 * after the commit | logged; the request still succeeds |
 * | `envelopeDelivered` | observer, not awaited | logged |
 *
 * A refusal (a returned {@link Refusal}) is not a failure: it is the
 * plugin's decision, answered as 403 `refused_by_plugin`.
 */
export interface ServerHooks {
  start?(): MaybePromise<void>;
  stop?(): MaybePromise<void>;
  beforeAccountRegistered?(candidate: AccountRegistrationCandidate): MaybePromise<Refusal | void>;
  accountRegistered?(event: AccountRegisteredEvent): MaybePromise<void>;
  deviceLinked?(event: DeviceLinkedEvent): MaybePromise<void>;
  deviceRemoved?(event: DeviceRemovedEvent): MaybePromise<void>;
  keysUploaded?(event: KeysUploadedEvent): MaybePromise<void>;
  identityKeyChanged?(event: IdentityKeyChangedEvent): MaybePromise<void>;
  beforeEnvelopeAccepted?(candidate: EnvelopeCandidate): MaybePromise<Refusal | void>;
  envelopeDelivered?(event: EnvelopeDeliveredEvent): MaybePromise<void>;
}

/** The name of every hook. */
export type HookName = keyof ServerHooks;

/**
 * A plugin's own key-value storage, namespaced by plugin name (other plugins
 * cannot see it). Keys are ordered by code point. A call outside
 * {@link storageLimits} (or a `set` with an empty key, or a NUL
 * character) rejects with an error that names the limit.
 */
export interface PluginStorage {
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
  /** @returns whether the key existed */
  delete(key: string): Promise<boolean>;
  /** Entries whose key starts with `prefix`, in key order, after `after` (exclusive) when given. */
  list(prefix: string, options?: { after?: string; limit?: number }): Promise<{ key: string; value: string }[]>;
}

/** Storage limits, enforced by the host. */
export const storageLimits = {
  maxKeyLength: 256,
  maxValueBytes: 64 * 1024,
  maxListLimit: 1000,
} as const;

/** A request to a plugin route. Bodies are JSON, size-limited by the server. */
export interface PluginRequest {
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  body: unknown;
  /** The authenticated device, for routes declared with `auth: "device"`. */
  device: DeviceRef | null;
}

/** A plugin route's answer: a JSON body (or a refusal with an error code). */
export interface PluginResponse {
  status?: number;
  body?: unknown;
}

/** A route under `/plugins/<name>/`. */
export interface PluginRoute {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** Relative to `/plugins/<name>`, Express syntax: `/v1/proof/:accountId`. */
  path: string;
  /** `device` requires HTTP Basic device credentials, like `/v1` routes. @default "none" */
  auth?: "none" | "device";
  /**
   * Answers the request within the plugin's hook budget: `{ status?, body? }`
   * is 200 with a JSON body, or 204 without one. To refuse, return a 4xx
   * `status` with an error body such as `{ code, message }`. A thrown error,
   * an overrun or a malformed answer is a plugin failure: the client gets
   * 500 `internal` and the server logs the plugin's name.
   */
  handler(request: PluginRequest): MaybePromise<PluginResponse>;
}

/** A structured logger (pino's interface), tagged with the plugin's name. */
export interface PluginLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** What the host gives a plugin. */
export interface PluginContext {
  readonly name: string;
  /** The homeserver's `serverName`. */
  readonly serverName: string;
  /** A directory of the plugin's own (`<data-dir>/plugins/<name>`, created, mode 0700) for key files and the like. */
  readonly dataDir: string;
  readonly logger: PluginLogger;
  readonly storage: PluginStorage;
  /** Adds a route under `/plugins/<name>/`. Call during `setup`. */
  route(route: PluginRoute): void;
}

/** A server plugin: a name, a config schema, and a setup that returns its hooks. */
export interface ServerPlugin<Config = unknown> {
  name: string;
  /** Validates (and fills defaults in) the plugin's config object from the server config. */
  configSchema: z.ZodType<Config>;
  /** Sets up the plugin for one homeserver; returns the hooks it implements. */
  setup(context: PluginContext, config: Config): MaybePromise<ServerHooks>;
}

/** Declares a plugin with typed config (identity function for inference). */
export function definePlugin<Schema extends z.ZodType>(plugin: {
  name: string;
  configSchema: Schema;
  setup(context: PluginContext, config: z.output<Schema>): MaybePromise<ServerHooks>;
}): ServerPlugin<z.output<Schema>> {
  if (!pluginNamePattern.test(plugin.name))
    throw new Error(`plugin name "${plugin.name}" must match ${pluginNamePattern}`);
  return plugin as ServerPlugin<z.output<Schema>>;
}
