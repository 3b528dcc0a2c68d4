import { mkdirSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import {
  ApiError,
  ZimClient,
  checkServerUrl,
  type AttachmentInput,
  type AttachmentPointer,
  type GroupUpdatedEvent,
  type MessageEvent,
  type UploadOptions,
  type ZimClientOptions,
} from "@zimchat/client";
import type { DisconnectReason } from "@zimchat/protocol";
import { Composer, parseCommand, type MiddlewareFn } from "./composer.js";
import { Context, type BotUpdate } from "./context.js";
import {
  BotConfigError,
  BotError,
  closedConnectionReason,
  usernameTakenError,
  type BotRegistration,
} from "./errors.js";
import { consoleLogger, silentLogger, type BotLogger } from "./logger.js";
import {
  BotDeviceStore,
  openRegisteredStore,
  readMarker,
  storeFileName,
  unmarkedRegistration,
  writeMarker,
} from "./registration.js";
import { releaseSignals, stopOnSignals } from "./signals.js";
import { lockStore } from "./store-lock.js";
import { Allowlist, type BotTrust, type IdentityChangePolicy } from "./trust.js";

/** Options for {@link Bot}. */
export interface BotOptions {
  /**
   * The bot's own directory: its protocol store `device.db` (private keys,
   * sessions; owner-only) and `bot.json`, which records the account once it
   * is registered. Back it up; never share it between two running bots.
   */
  dir: string;
  /** The homeserver's URL. Needed to register or link; later runs use the stored one. */
  server?: string;
  /** The bot's username, to register with (later runs use the registered one, from `bot.json`). */
  username?: string;
  /** An invite token, when the homeserver registers by invite. Used once, never logged. */
  inviteToken?: string;
  /**
   * Link this directory as a new device of an existing account instead of
   * registering one: the bot logs a link URI, to approve on that account's
   * primary device (`zimchat-chat approve-link '<uri>'`). @default false
   */
  link?: boolean;
  /** The trust-root fingerprint the homeserver's admin published, checked when registering. */
  trustRootFingerprint?: string;
  /** One line about the bot, shown first by the generated `/help`. */
  description?: string;
  /** Whom the bot answers. @default "tofu" */
  trust?: BotTrust;
  /** What a user's changed identity key does. @default "accept" */
  onIdentityChange?: IdentityChangePolicy;
  /** Where the bot reports what it does (never message text, tokens or keys); `false` for nothing. @default console */
  logger?: BotLogger | false;
  /** Send encrypted delivery receipts for messages the bot decrypted. @default true */
  sendReceipts?: boolean;
  /**
   * Check users' identity keys against the homeserver's key-transparency log
   * (see `ZimClientOptions.keyTransparency`); failures reach
   * `bot.on("key_transparency_failure")`. @default {} (when the server offers the log)
   */
  keyTransparency?: ZimClientOptions["keyTransparency"];
  /**
   * Allow a plain `http://` server that is not on this machine (loopback is
   * always allowed); see `ZimClientOptions.allowInsecureHttp`. @default false
   */
  allowInsecureHttp?: boolean;
  /**
   * While the bot runs, SIGINT (Ctrl-C) and SIGTERM stop it cleanly (the
   * updates in hand finish, the connection and the store close) and then end
   * the process (exit code 0, or 1 if stopping failed); a second signal ends
   * it at once. `false` leaves signals to the application, which then calls
   * `stop()` itself. @default true
   */
  handleSignals?: boolean;
}

/** The error boundary's handler: gets every error a handler threw, with its context. */
export type ErrorHandler<C extends Context> = (error: BotError<C>) => unknown;

const describeError = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);

/**
 * An end-to-end encrypted ZimChat bot: a device of its own account, with
 * its protocol store on disk, decrypting on this machine, and grammY-style
 * routing (`use`, `on`, `command`, `hears`; `session` middleware; a
 * generated `/help`; `catch` as the error boundary).
 *
 * `start()` registers the first time (with `server`, `username`,
 * `inviteToken`) and opens the stored device after that. A registered bot
 * whose store is missing or unreadable refuses to start with a
 * {@link BotStoreError} that says how to recover: it never registers again
 * by itself.
 *
 * @example
 * const bot = new Bot({ dir: "./echo-bot", server: "http://localhost:8080", username: "echobot", inviteToken });
 * bot.command("ping", "is the bot alive?", (ctx) => ctx.reply("pong"));
 * bot.on("message", (ctx) => ctx.reply(ctx.message.text));
 * await bot.start();
 */
export class Bot<C extends Context = Context> extends Composer<C> {
  /** The bot's directory (absolute). */
  readonly dir: string;
  private readonly options: BotOptions;
  /** Where the bot reports what it does (the `logger` option). */
  readonly logger: BotLogger;
  private readonly allowlist: Allowlist | null;
  private readonly verifiedOnly: boolean;
  private readonly identityPolicy: IdentityChangePolicy;
  private zim: ZimClient | null = null;
  private store: BotDeviceStore | null = null;
  private marker: BotRegistration | null = null;
  private handler: MiddlewareFn<C> | null = null;
  private errorHandler: ErrorHandler<C>;
  /** The last queued dispatch of each conversation: updates of one conversation are handled in order. */
  private readonly queues = new Map<string, Promise<void>>();
  private readonly startHooks: ((bot: this) => unknown)[] = [];
  private readonly stopHooks: ((bot: this) => unknown)[] = [];
  private readonly displacedHooks: ((bot: this) => unknown)[] = [];
  /** Releases the directory's lock (`bot.lock`) while the bot runs. */
  private unlock: (() => void) | null = null;

  constructor(options: BotOptions) {
    super();
    this.options = options;
    this.dir = resolvePath(options.dir);
    this.logger = options.logger === false ? silentLogger : (options.logger ?? consoleLogger);
    const trust = options.trust ?? "tofu";
    this.allowlist = trust === "tofu" ? null : new Allowlist(trust.allow);
    this.verifiedOnly = trust !== "tofu" && trust.verifiedOnly === true;
    this.identityPolicy = options.onIdentityChange ?? "accept";
    if (options.onIdentityChange !== undefined && !["accept", "block"].includes(options.onIdentityChange)) {
      throw new BotConfigError(
        `onIdentityChange must be "accept" or "block", not "${String(options.onIdentityChange)}"`,
      );
    }
    this.errorHandler = (error) => {
      const from = error.ctx.from;
      this.logger.error(
        `A handler failed on a ${error.ctx.update.type} update${from ? ` from ${from}` : ""}: ${describeError(error.error)}`,
        error.error,
      );
    };
    // The generated /help, unless the bot registers its own.
    this.use(async (ctx, next) => {
      const parsed = ctx.message ? parseCommand(ctx.message.text) : null;
      const forUs =
        parsed && (parsed.target === undefined || parsed.target.toLowerCase() === this.username.toLowerCase());
      if (forUs && parsed.name === "help" && !this.commands.some((c) => c.name === "help")) {
        await ctx.reply(this.helpText());
        return;
      }
      await next();
    });
  }

  /** The bot's client (its device). Only between `start()` and `stop()`. */
  get client(): ZimClient {
    if (!this.zim) throw new Error("the bot is not running: call start() first");
    return this.zim;
  }

  /** The bot's username ("" before it started). */
  get username(): string {
    return this.marker?.username ?? "";
  }

  /** The bot's account id ("" before it started). */
  get uuid(): string {
    return this.marker?.uuid ?? "";
  }

  /** What `bot.json` records: account id, username, device id, server. Null before `start()`. */
  get registration(): BotRegistration | null {
    return this.marker;
  }

  /** Whether the bot is running. */
  get running(): boolean {
    return this.zim !== null;
  }

  /**
   * Replaces the error boundary's handler (the default logs the error with the update's kind and author's account id).
   */
  catch(handler: ErrorHandler<C>): this {
    this.errorHandler = handler;
    return this;
  }

  /** Runs `hook` at the end of every `start()`, once the bot is live (e.g. to re-arm timers from stored sessions). */
  onStart(hook: (bot: this) => unknown): this {
    this.startHooks.push(hook);
    return this;
  }

  /**
   * Runs `hook` at the end of `stop()`, once the last handler has finished and the device is closed (e.g. to clear
   * timers, close storage).
   */
  onStop(hook: (bot: this) => unknown): this {
    this.stopHooks.push(hook);
    return this;
  }

  /**
   * Runs `hook` when the homeserver closed the bot's connection because
   * another connection of the same device took over (the bot's directory, or
   * a copy of it, runs in another process): the bot has stopped by then
   * (`stop()` ran). Runners exit non-zero here (a supervisor restarting the
   * bot would only displace the other copy in turn).
   */
  onDisplaced(hook: (bot: this) => unknown): this {
    this.displacedHooks.push(hook);
    return this;
  }

  /**
   * The generated `/help` text: the description, then each command with its description (always at least `/help`
   * itself).
   */
  helpText(): string {
    const lines = this.options.description ? [this.options.description, ""] : [];
    const commands = this.commands;
    lines.push("Commands:");
    for (const c of commands) lines.push(c.description ? `/${c.name} - ${c.description}` : `/${c.name}`);
    if (!commands.some((c) => c.name === "help")) lines.push("/help - this list");
    return lines.join("\n");
  }

  /**
   * Opens the bot's device (registering or linking it the first time),
   * connects, handles what was queued while it was offline, and resolves
   * once it is live. Logs the bot's username and identity fingerprint.
   * @throws BotStoreError when the bot is registered but its store is missing, unreadable or empty
   * @throws BotConfigError when it is not registered and the options cannot register it
   */
  async start(): Promise<void> {
    if (this.zim) throw new Error("the bot is already running");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // One process per bot directory: a second one would displace this one's connection.
    const unlock = lockStore(this.dir);
    let device;
    try {
      device = await this.openDevice();
    } catch (error) {
      unlock();
      throw error;
    }
    const { store, client, marker } = device;
    this.unlock = unlock;
    this.store = store;
    this.zim = client;
    this.marker = marker;
    this.handler = this.middleware();
    this.wire(client);
    try {
      await client.connect();
    } catch (error) {
      await this.closeDevice();
      throw error;
    }
    if (this.options.handleSignals ?? true) stopOnSignals(this);
    this.announce();
    for (const hook of this.startHooks) await hook(this);
  }

  /**
   * Stops: no new envelopes, handlers still running finish (their replies
   * are sent), then the store is closed. Idempotent.
   */
  async stop(): Promise<void> {
    if (!this.zim) return;
    releaseSignals(this);
    await this.closeDevice();
    for (const hook of this.stopHooks) {
      try {
        await hook(this);
      } catch (error) {
        this.logger.error(`A stop hook failed: ${describeError(error)}`, error);
      }
    }
    this.logger.info(`Bot @${this.username} stopped.`);
  }

  /** Resolves when every update received so far has been handled. */
  async idle(): Promise<void> {
    while (this.queues.size) await Promise.all([...this.queues.values()]);
  }

  /** Sends a text to a user (username or account id) or a group (`group:<id>`), outside any handler. */
  async sendText(to: string, text: string): Promise<{ timestamp: number }> {
    const { timestamp } = to.startsWith("group:")
      ? await this.client.sendGroupText(to.slice(6), text)
      : await this.client.sendText(to, text);
    return { timestamp };
  }

  /** Sends a file to a user or a group (`group:<id>`), outside any handler. */
  async sendFile(
    to: string,
    source: AttachmentInput,
    options: UploadOptions & { caption?: string } = {},
  ): Promise<{ timestamp: number; attachment: AttachmentPointer }> {
    return to.startsWith("group:")
      ? this.client.sendGroupAttachment(to.slice(6), source, options)
      : this.client.sendAttachment(to, source, options);
  }

  /**
   * Marks a user verified when `entered` (60 digits or a scanned payload)
   * equals the bot's safety number with them; lifts an identity block.
   * @returns whether it matched
   */
  async verify(user: string, entered: string): Promise<boolean> {
    return this.client.verify(user, entered);
  }

  /** Accepts a user's changed identity key without verifying it (lifts an identity block; the user is unverified). */
  async acceptIdentityChange(user: string): Promise<void> {
    await this.client.acceptIdentityChange(user);
  }

  /**
   * The bot's half of every safety number with it: 30 digits (six groups of
   * five) that libsignal derives from the bot's account id and identity key
   * alone. Publish them; a user whose safety number with the bot does not
   * contain them is not talking to this bot.
   */
  identityFingerprint(): string {
    return this.client.identityFingerprint();
  }

  // ------------------------------------------------------------ internals

  private async openDevice(): Promise<{ store: BotDeviceStore; client: ZimClient; marker: BotRegistration }> {
    const clientOptions = {
      sendReceipts: this.options.sendReceipts ?? true,
      ...(this.options.keyTransparency !== undefined ? { keyTransparency: this.options.keyTransparency } : {}),
      allowInsecureHttp: this.options.allowInsecureHttp ?? false,
    };
    const existing = readMarker(this.dir);
    if (existing) {
      if (this.options.username !== undefined && this.options.username !== existing.username) {
        // Not an error: a default username (as the examples set) only matters for registering.
        this.logger.warn(
          `${this.dir} holds the bot @${existing.username}: starting it (the username ${this.options.username} is only used to register a new bot).`,
        );
      }
      const store = openRegisteredStore(this.dir, existing);
      return { store, client: new ZimClient({ store, ...clientOptions }), marker: existing };
    }
    const unmarked = unmarkedRegistration(this.dir);
    if (unmarked) {
      // Registered, but stopped before bot.json was written: write it now.
      const marker: BotRegistration = {
        uuid: unmarked.uuid,
        username: unmarked.username,
        deviceId: unmarked.deviceId,
        server: unmarked.serverUrl,
        registeredAt: Date.now(),
      };
      writeMarker(this.dir, marker);
      const store = openRegisteredStore(this.dir, marker);
      return { store, client: new ZimClient({ store, ...clientOptions }), marker };
    }
    const { server, username, inviteToken, link, trustRootFingerprint } = this.options;
    if (!server)
      throw new BotConfigError(
        `${this.dir} holds no registered bot: pass server (and username and inviteToken to register, or link: true) to create one`,
      );
    if (!link && !username)
      throw new BotConfigError(
        `${this.dir} holds no registered bot: pass a username (and an inviteToken if the homeserver registers by invite)`,
      );
    try {
      checkServerUrl(server, clientOptions);
    } catch (error) {
      throw new BotConfigError(error instanceof Error ? error.message : String(error), { cause: error });
    }
    const store = new BotDeviceStore(join(this.dir, storeFileName));
    let client: ZimClient;
    try {
      client = link
        ? await ZimClient.link({
            serverUrl: server,
            store,
            ...clientOptions,
            onLinkCode: ({ uri, expiresAt }) =>
              this.logger.info(
                `To link this bot as a new device of an existing account, approve it on that account's primary device before ${new Date(expiresAt).toISOString()}:\n  zimchat-chat approve-link '${uri}'`,
              ),
          })
        : await ZimClient.register({
            serverUrl: server,
            username: username!,
            store,
            ...clientOptions,
            ...(inviteToken ? { inviteToken } : {}),
            ...(trustRootFingerprint ? { trustRootFingerprint } : {}),
          });
    } catch (error) {
      store.release();
      // The store is left empty by a refused registration: the next start tries again from scratch.
      unmarkedRegistration(this.dir);
      if (!link && error instanceof ApiError && error.code === "username_taken") {
        throw usernameTakenError(username!, server, this.dir, error);
      }
      throw error;
    }
    const local = client.local;
    const marker: BotRegistration = {
      uuid: local.uuid,
      username: local.username,
      deviceId: local.deviceId,
      server,
      registeredAt: Date.now(),
    };
    writeMarker(this.dir, marker);
    this.logger.info(
      `Registered @${local.username} (account ${local.uuid}, device ${local.deviceId}); its keys are in ${join(this.dir, storeFileName)}: back up ${this.dir}.`,
    );
    return { store, client, marker };
  }

  private async closeDevice(): Promise<void> {
    const client = this.zim;
    if (!client) return;
    // The client stops taking envelopes and finishes what it started; the store stays open for handlers still replying.
    await client.close();
    await this.idle();
    client.removeAllListeners();
    this.store?.release();
    this.unlock?.();
    this.unlock = null;
    this.zim = null;
    this.store = null;
  }

  /**
   * The homeserver closed the bot's connection for good: say why, stop, and tell `onDisplaced` hooks when another
   * connection took over.
   */
  private async closedByServer(reason: DisconnectReason): Promise<void> {
    if (reason === "shutdown") {
      this.logger.warn(
        "The homeserver is shutting down and closed the bot's connection (the client does not reconnect by itself): restart the bot once the homeserver is back.",
      );
      return;
    }
    this.logger.error(
      `The homeserver closed the connection of @${this.username}: ${closedConnectionReason(reason, this.dir)}`,
    );
    await this.stop();
    if (reason !== "displaced") return;
    for (const hook of this.displacedHooks) {
      try {
        await hook(this);
      } catch (error) {
        this.logger.error(`A displaced hook failed: ${describeError(error)}`, error);
      }
    }
  }

  private wire(client: ZimClient): void {
    client.on("message", (m) => {
      if (!m.outgoing) this.enqueue(m.conversation, () => this.dispatchMessage(m));
    });
    client.on("groupUpdated", (g) => this.enqueue(`group:${g.group.id}`, () => this.dispatchGroupUpdate(g)));
    // Emitted while the client stores the new key (inside its store transaction): the policy is applied right there,
    // before the message that carried the key is handed to anyone.
    client.on("identityChanged", ({ uuid }) => {
      const known = client.store.getIdentity(uuid);
      const block = this.identityPolicy === "block";
      if (known) client.store.saveIdentity({ ...known, verified: false, blocked: block });
      this.logger.warn(
        `The identity key of ${uuid} changed (their safety number with the bot changed): ${block ? "blocked until verified again" : "accepted, unverified"}.`,
      );
      this.enqueue(uuid, () =>
        this.dispatchIfAllowed(
          uuid,
          { type: "identity_changed", identityChange: { uuid, action: block ? "blocked" : "accepted" } },
          true,
        ),
      );
    });
    client.on("decryptionFailed", ({ envelopeId, from, reason, error }) => {
      this.logger.warn(`Could not decrypt an envelope from ${from ?? "an unknown sender"}: ${reason}.`);
      const update: BotUpdate = {
        type: "decryption_failed",
        failure: { envelopeId, ...(from ? { from } : {}), reason, error },
      };
      this.enqueue(from ?? "", () =>
        from ? this.dispatchIfAllowed(from, update, true) : this.run(new Context(update, this.asBot(), false) as C),
      );
    });
    client.on("keyTransparencyFailure", (failure) => {
      this.logger.warn(
        `The key-transparency check of ${failure.accountId} failed (${failure.reason}): compare safety numbers with them before trusting the conversation.`,
      );
      this.enqueue(failure.accountId, () =>
        this.dispatchIfAllowed(failure.accountId, { type: "key_transparency_failure", keyTransparency: failure }, true),
      );
    });
    client.on("deviceListChanged", (devices) => {
      // The first connection reports the bot's own device as added: only other devices are news.
      const others = [...devices.added, ...devices.removed].filter((d) => d !== client.local.deviceId);
      if (!others.length) return;
      if (devices.added.length)
        this.logger.warn(
          `Device(s) ${devices.added.join(", ")} were linked to the bot's account: if you did not link them, someone else holds its account key.`,
        );
      this.enqueue("", () => this.run(new Context({ type: "device_list_changed", devices }, this.asBot(), false) as C));
    });
    client.on("remoteDeliveryFailed", (failure) => {
      this.logger.warn(
        `A message to ${failure.to} on ${failure.server} will not be delivered (${failure.reason}): that homeserver refused it or did not answer.`,
      );
      this.enqueue(failure.to, () =>
        this.run(new Context({ type: "remote_delivery_failed", remoteDelivery: failure }, this.asBot(), false) as C),
      );
    });
    client.on("serverBindingRefused", ({ uuid, boundTo, claimed }) =>
      this.logger.warn(
        `Refused: ${claimed ?? "the bot's homeserver"} claims the account ${uuid}, which belongs to ${boundTo ?? "the bot's homeserver"} (a server may be impersonating a user).`,
      ),
    );
    client.on("warning", (error) => this.logger.warn(`Background work failed: ${describeError(error)}`));
    client.on("closedByServer", ({ reason }) => {
      this.closedByServer(reason).catch((error: unknown) =>
        this.logger.error(`Stopping after the homeserver closed the connection failed: ${describeError(error)}`, error),
      );
    });
  }

  private asBot(): Bot<Context> {
    return this as unknown as Bot<Context>;
  }

  private enqueue(key: string, task: () => Promise<void>): void {
    const previous = this.queues.get(key) ?? Promise.resolve();
    const current = previous
      .then(task)
      .catch((error: unknown) => this.logger.error(`Dispatch failed: ${describeError(error)}`, error));
    this.queues.set(key, current);
    void current.then(() => {
      if (this.queues.get(key) === current) this.queues.delete(key);
    });
  }

  private async dispatchMessage(m: MessageEvent): Promise<void> {
    const message = {
      id: m.envelopeId,
      from: m.from,
      fromDevice: m.fromDevice,
      ...(m.fromServer !== undefined ? { fromServer: m.fromServer } : {}),
      conversation: m.conversation,
      ...(m.group !== undefined ? { group: m.group } : {}),
      text: m.text,
      ...(m.attachment ? { attachment: m.attachment } : {}),
      timestamp: m.timestamp,
      sealed: m.sealed,
      ...(m.senderName ? { senderName: m.senderName } : {}),
    };
    await this.dispatchIfAllowed(m.from, { type: "message", message }, false);
  }

  private async dispatchGroupUpdate(g: GroupUpdatedEvent): Promise<void> {
    await this.dispatchIfAllowed(g.by, { type: "group_update", groupUpdate: g }, false);
  }

  /**
   * Hands an update to the middleware if its author passes the trust
   * policy. Identity changes and decryption failures of users who do not
   * pass still reach the handlers when `alwaysTell`, without a chat to reply to.
   */
  private async dispatchIfAllowed(uuid: string, update: BotUpdate, alwaysTell: boolean): Promise<void> {
    const refusal = await this.refusal(uuid);
    if (refusal) {
      this.logger.info(`Ignored a ${update.type} update from ${uuid}: ${refusal}.`);
      if (!alwaysTell || refusal === "not on the allowlist") return;
    }
    await this.run(new Context(update, this.asBot(), refusal === null) as C);
  }

  /** Why the trust policy does not let `uuid` through, or null. */
  private async refusal(uuid: string): Promise<string | null> {
    const client = this.client;
    if (this.allowlist && !(await this.allowlist.allows(client, uuid))) return "not on the allowlist";
    const state = await client.trustState(uuid);
    if (state?.blocked) return "blocked after an identity key change (verify again or accept the change)";
    if (this.verifiedOnly && !state?.verified) return "not verified (verifiedOnly)";
    return null;
  }

  /** The error boundary: a failing handler is reported and never stops the bot. */
  private async run(ctx: C): Promise<void> {
    try {
      await this.handler!(ctx, async () => {});
    } catch (error) {
      try {
        await this.errorHandler(new BotError(error, ctx));
      } catch (inner) {
        this.logger.error(`The error handler itself failed: ${describeError(inner)}`, inner);
      }
    }
  }

  private announce(): void {
    const { uuid, deviceId, serverUrl, username } = this.client.local;
    const log = this.logger;
    log.info(
      `Bot @${username} (account ${uuid}, device ${deviceId}) is running on ${serverUrl}; messages are end-to-end encrypted and decrypted only here.`,
    );
    log.info(`Identity fingerprint (the bot's half of every safety number with it): ${this.identityFingerprint()}`);
    log.info(
      `Users verify the bot by comparing the safety number their app shows for ${username} (zimchat-chat safety-number ${username}) with the one the bot computes for them (ctx.safetyNumber()); it contains the digits above.`,
    );
    if (this.allowlist) {
      log.info(
        `Trust: only the ${this.allowlist.size} allowlisted user(s)${this.verifiedOnly ? ", once verified," : ""} are answered; others get no reply.`,
      );
    }
    log.info(
      `Identity changes of users: ${this.identityPolicy === "block" ? "blocked until verified again" : "accepted (unverified)"}.`,
    );
  }
}
