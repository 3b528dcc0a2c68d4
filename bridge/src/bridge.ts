/**
 * The bridge core: the ZimChat side of a relay bot. It decides where the bot
 * may relay (only groups whose state, set by an admin, lists this bot's
 * account with a target), queues ZimChat messages in a durable outbox until
 * the network confirmed them, posts remote lines into the group, and answers
 * `/status`. The network side is a {@link NetworkAdapter}.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { markerFileName, type Bot, type Context, type Filtered } from "@zimchat/plugin-sdk/bot";
import { FilePublisher, type FilesConfig } from "./files.js";
import { networkLabel, type NetworkAdapter, type NetworkName, type RemoteMessage } from "./network.js";
import { BridgeStore, type Mapping } from "./store.js";

/** Counters since start (the `/status` command, and tests). */
export interface BridgeCounters {
  /** ZimChat messages the network confirmed. */
  toNetwork: number;
  /** Remote lines posted into ZimChat groups. */
  fromNetwork: number;
  /**
   * Messages not relayed: the group did not approve the bridge, or the message broke the network's limits under
   * `refuse`.
   */
  refused: number;
  /** Messages relayed cut to the network's limits. */
  cut: number;
  /** Attachments announced by name and size instead of sent. */
  attachmentsWithheld: number;
  /** Attachments published as links (groups with `attachments: true`, a bridge with `files`). */
  attachmentsPublished: number;
  /** Remote lines not posted (the group refused them, or sending failed). */
  failedFromNetwork: number;
  /** ZimChat messages dropped because the network refused them three times while connected. */
  failedToNetwork: number;
}

/** What `/status` reports. */
export interface BridgeStatus extends BridgeCounters {
  network: NetworkName;
  connected: boolean;
  reconnects: number;
  targets: string[];
  puppets: number;
  groups: number;
  queued: number;
}

/** Options for {@link Bridge}. */
export interface BridgeOptions {
  /** The bridge's bot (not started): the bridge adds its handlers and starts it. */
  bot: Bot;
  adapter: NetworkAdapter;
  /** Remote lines longer than this (characters) are cut before they are posted. @default 4000 */
  maxRemoteChars?: number;
  /**
   * Where attachments of groups that asked for them (`attachments: true`)
   * are published; without it, every attachment is announced by name and
   * size only.
   */
  files?: FilesConfig;
}

/** How many outbox rows go to the network per confirmation. */
const deliverBatch = 20;
/** How long after a refused delivery (the network stayed connected) the outbox is tried again. */
const refusedRetryMs = 5_000;

/** The text a bridge bot's `/help` starts with: what it is and that it decrypts. */
export const bridgeDescription = (network: NetworkName): string =>
  `A ZimChat bridge to ${networkLabel[network]}. It decrypts the messages of the groups it bridges and sends them ` +
  `in plaintext to ${networkLabel[network]}, and posts what is said there into the group. It relays only in groups ` +
  `whose admin approved it with the chat command /bridge <this bot> ${network} <target>; every member's client then ` +
  `shows that the group is bridged. /status shows what it relays.`;

const formatBytes = (n: number): string =>
  n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`;

export class Bridge {
  readonly bot: Bot;
  readonly adapter: NetworkAdapter;
  private store: BridgeStore | null = null;
  private readonly maxRemoteChars: number;
  private readonly filesConfig: FilesConfig | undefined;
  private files: FilePublisher | null = null;
  private connected = false;
  private pumping = false;
  /** Remote lines are posted in order, one target at a time. */
  private readonly postQueues = new Map<string, Promise<void>>();
  readonly counters: BridgeCounters = {
    toNetwork: 0,
    fromNetwork: 0,
    refused: 0,
    cut: 0,
    attachmentsWithheld: 0,
    attachmentsPublished: 0,
    failedFromNetwork: 0,
    failedToNetwork: 0,
  };
  /** Failed deliveries in a row while the network stayed connected (a refusal, not a dropped connection). */
  private refusedInARow = 0;

  constructor(options: BridgeOptions) {
    this.bot = options.bot;
    this.adapter = options.adapter;
    this.maxRemoteChars = options.maxRemoteChars ?? 4000;
    this.filesConfig = options.files;
    const bot = this.bot;
    bot.command("status", `what this bridge relays (${networkLabel[this.adapter.network]})`, (ctx) =>
      ctx.reply(this.statusText()),
    );
    bot.on("group_update", (ctx) => this.onGroupUpdate(ctx.groupUpdate.group.id, ctx.groupUpdate.left));
    bot.on("group_message", (ctx) => this.onGroupMessage(ctx));
    bot.onStart(() => this.reconcile());
    // Also when the bot stops on a signal: the network connection and the store close after the last handler.
    bot.onStop(async () => {
      await this.adapter.stop();
      this.files?.stop();
      this.files = null;
      this.closeStore();
    });
  }

  private get label(): string {
    return networkLabel[this.adapter.network];
  }

  private requireStore(): BridgeStore {
    if (!this.store) throw new Error("the bridge is not running");
    return this.store;
  }

  /**
   * Opens the bridge's store (refusing to start when the bot is registered
   * but the store is gone), connects the network, then starts the bot, which
   * handles what was queued for it while it was offline.
   * @throws BridgeStoreMissingError, and whatever `Bot.start` throws
   */
  async start(): Promise<void> {
    mkdirSync(this.bot.dir, { recursive: true, mode: 0o700 });
    this.store = BridgeStore.open(this.bot.dir, existsSync(join(this.bot.dir, markerFileName)));
    if (this.filesConfig) this.files = new FilePublisher(this.filesConfig);
    try {
      await this.adapter.start({
        message: (m) => this.onRemoteMessage(m),
        connected: () => {
          this.connected = true;
          this.bot.logger.info(`${this.label}: connected`);
          void this.pump();
        },
        disconnected: (reason) => {
          this.connected = false;
          this.bot.logger.warn(`${this.label}: disconnected (${reason}); reconnecting`);
        },
        puppetName: (senderId) => this.store?.puppetName(senderId, this.adapter.network),
        puppetNamed: (senderId, name) => this.store?.setPuppetName(senderId, this.adapter.network, name),
      });
      await this.bot.start();
    } catch (error) {
      await this.adapter.stop();
      this.files?.stop();
      this.files = null;
      this.closeStore();
      throw error;
    }
  }

  /** Stops the bot (handlers in hand finish), then the network connection, then closes the store. */
  async stop(): Promise<void> {
    await this.bot.stop();
  }

  private closeStore(): void {
    this.store?.close();
    this.store = null;
  }

  /** The figures `/status` reports. */
  status(): BridgeStatus {
    const a = this.adapter.status();
    const store = this.store;
    return {
      ...this.counters,
      network: this.adapter.network,
      connected: a.connected,
      reconnects: a.reconnects,
      targets: a.targets,
      puppets: a.puppets,
      groups: store?.mappings().length ?? 0,
      queued: store?.queued() ?? 0,
    };
  }

  private statusText(): string {
    const s = this.status();
    return [
      `${this.label} bridge @${this.bot.username}: ${s.connected ? "connected" : "not connected"} (${s.reconnects} reconnects); ` +
        `targets: ${s.targets.join(", ") || "none"}; groups bridged: ${s.groups}; puppets: ${s.puppets}`,
      `relayed to ${this.label}: ${s.toNetwork}, from ${this.label}: ${s.fromNetwork}; queued: ${s.queued}; ` +
        `refused: ${s.refused}, cut: ${s.cut}, attachments withheld: ${s.attachmentsWithheld}, ` +
        `published: ${s.attachmentsPublished}, failed from ${this.label}: ${s.failedFromNetwork}, ` +
        `failed to ${this.label}: ${s.failedToNetwork}`,
    ].join("\n");
  }

  // ---------------------------------------------------------------- approval

  /** Where a group's state (set by its admins) lets this bot relay, or why not. */
  private approvalOf(groupId: string): { mapping: Mapping } | { refused: string } | null {
    const group = this.bot.client.group(groupId);
    if (!group || !group.members.includes(this.bot.uuid)) return null;
    const entry = (group.bridges ?? []).find((b) => b.account === this.bot.uuid && b.network === this.adapter.network);
    if (!entry) return null;
    const target = this.adapter.normalizeTarget(entry.target);
    if (target === null) return { refused: `${entry.target} is not an ${this.label} target this bridge may join` };
    return {
      mapping: {
        groupId,
        network: this.adapter.network,
        target,
        attachments: entry.attachments === true,
        since: Date.now(),
      },
    };
  }

  /**
   * Brings the stored mapping and the network's joined targets in line with
   * the group's state. @returns what changed
   */
  private async sync(groupId: string): Promise<"approved" | "changed" | "revoked" | "unchanged" | string> {
    const store = this.requireStore();
    const current = store.mapping(groupId);
    const approval = this.approvalOf(groupId);
    const next = approval && "mapping" in approval ? approval.mapping : null;
    if (!next) {
      if (!current) return approval && "refused" in approval ? approval.refused : "unchanged";
      store.removeMapping(groupId);
      await this.partIfUnused(current.target);
      this.bot.logger.info(`Group ${groupId}: no longer approved; left ${current.target}`);
      return "revoked";
    }
    if (current && current.target === next.target && current.attachments === next.attachments) return "unchanged";
    store.setMapping(current ? { ...next, since: current.since } : next);
    if (current && current.target !== next.target) await this.partIfUnused(current.target);
    await this.adapter.join(next.target);
    this.bot.logger.info(`Group ${groupId}: approved for ${this.label} ${next.target}`);
    return current ? "changed" : "approved";
  }

  private async partIfUnused(target: string): Promise<void> {
    if (
      !this.requireStore()
        .mappings()
        .some((m) => m.target === target)
    )
      await this.adapter.part(target);
  }

  /** At start: every group the bot knows or had mapped, checked against its state. */
  private async reconcile(): Promise<void> {
    const ids = new Set([
      ...this.bot.client.listGroups().map((g) => g.id),
      ...this.requireStore()
        .mappings()
        .map((m) => m.groupId),
    ]);
    for (const id of ids) await this.sync(id);
    // Unchanged mappings were joined by an earlier run: join them in this one.
    for (const m of this.requireStore().mappings()) await this.adapter.join(m.target);
    void this.pump();
  }

  private async onGroupUpdate(groupId: string, left: boolean): Promise<void> {
    const change = await this.sync(groupId);
    if (left) return;
    const mapping = this.requireStore().mapping(groupId);
    if ((change === "approved" || change === "changed") && mapping) {
      await this.bot.client.sendGroupText(
        groupId,
        `Bridging this group to ${this.label} ${mapping.target}: from now on messages here are decrypted by ` +
          `@${this.bot.username} and sent in plaintext to ${this.label}, and what is said there appears here. ` +
          (!mapping.attachments
            ? "Attachments are not sent there (only their name and size)."
            : this.files
              ? "Attachments are decrypted too and published there as links anyone with the link can open."
              : "The admin asked for attachments to be sent, but this bridge does not publish files: only their name and size are sent."),
      );
    } else if (change !== "approved" && change !== "changed" && change !== "revoked" && change !== "unchanged") {
      await this.bot.client.sendGroupText(groupId, `Not bridging this group: ${change}.`);
    }
  }

  // ---------------------------------------------------------------- ZimChat -> network

  private senderName(ctx: Filtered<Context, "group_message">): string {
    const verified = ctx.fromUsername;
    if (verified) return verified;
    const member = this.bot.client.groupMembers(ctx.message.group!)?.find((m) => m.uuid === ctx.from);
    if (member?.name?.verified) return member.name.username;
    return ctx.from.slice(0, 8);
  }

  private async onGroupMessage(ctx: Filtered<Context, "group_message">): Promise<void> {
    const groupId = ctx.message.group!;
    if (ctx.from === this.bot.uuid) return;
    const store = this.requireStore();
    await this.sync(groupId);
    const mapping = store.mapping(groupId);
    if (!mapping) {
      this.counters.refused += 1;
      const revision = this.bot.client.group(groupId)?.revision ?? 0;
      if (store.noteRefusal(groupId, revision)) {
        await ctx.reply(
          `I am an ${this.label} bridge and relay nothing from this group: no group admin approved it (for a target this bridge may join). ` +
            `An admin approves with the chat command /bridge @${this.bot.username} ${this.adapter.network} <target>, ` +
            `which every member's client then shows. Nothing from this group was sent to ${this.label}.`,
        );
      }
      return;
    }
    let text = ctx.message.text;
    const attachment = ctx.message.attachment;
    if (attachment) {
      const file = `[file: ${attachment.fileName ?? "unnamed"}, ${formatBytes(attachment.size)}]`;
      const link = mapping.attachments && this.files ? await this.publish(ctx) : "";
      if (!link) this.counters.attachmentsWithheld += 1;
      text = [file + link, text].filter(Boolean).join(" ");
    }
    const prepared = this.adapter.prepare(text);
    if (!prepared.ok) {
      this.counters.refused += 1;
      await ctx.reply(`Not sent to ${this.label}: ${prepared.reason}.`);
      return;
    }
    if (prepared.cut) {
      this.counters.cut += 1;
      await ctx.reply(`Cut for ${this.label}: ${prepared.note ?? "the message was longer than its limits"}.`);
    }
    const queued = store.enqueue({
      messageKey: `${ctx.from}:${ctx.message.id}`,
      groupId,
      target: mapping.target,
      senderId: ctx.from,
      senderName: this.senderName(ctx),
      text: prepared.text,
    });
    if (queued) void this.pump();
  }

  /**
   * Publishes a message's attachment (the group asked for it and the bridge
   * has `files`): " <url>", or "" with the group told why it was not.
   */
  private async publish(ctx: Filtered<Context, "group_message">): Promise<string> {
    const attachment = ctx.message.attachment!;
    let outcome;
    try {
      outcome = await this.files!.publish(attachment.fileName, attachment.size, async () =>
        Uint8Array.from((await ctx.downloadAttachment()) as Buffer),
      );
    } catch (error) {
      outcome = { withheld: `it could not be downloaded (${error instanceof Error ? error.name : "error"})` };
    }
    if ("url" in outcome) {
      this.counters.attachmentsPublished += 1;
      return ` ${outcome.url}`;
    }
    await ctx.reply(`File not published on ${this.label} (only its name and size were sent): ${outcome.withheld}.`);
    return "";
  }

  /** Sends the outbox to the network while it is connected, deleting each batch once confirmed. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.connected && this.store) {
        const batch = this.store.pending(deliverBatch);
        if (!batch.length) break;
        try {
          await this.adapter.deliver(batch);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          if (!this.adapter.status().connected) {
            this.bot.logger.warn(
              `${this.label}: ${batch.length} message(s) not confirmed, kept for after the reconnect (${reason})`,
            );
            break;
          }
          // Still connected: the network refused the batch. Try again in a while; the third refusal in a row drops
          // its first message, so one message the network never takes does not hold up every later one.
          this.refusedInARow += 1;
          if (this.refusedInARow >= 3) {
            this.refusedInARow = 0;
            this.store?.confirm([batch[0]!.id]);
            this.counters.failedToNetwork += 1;
            this.bot.logger.warn(`${this.label}: dropped a message refused three times (${reason})`);
          } else this.bot.logger.warn(`${this.label}: ${batch.length} message(s) refused, retrying (${reason})`);
          setTimeout(() => void this.pump(), refusedRetryMs).unref();
          break;
        }
        this.refusedInARow = 0;
        this.store?.confirm(batch.map((m) => m.id));
        this.counters.toNetwork += batch.length;
      }
    } finally {
      this.pumping = false;
    }
  }

  // ---------------------------------------------------------------- network -> ZimChat

  private onRemoteMessage(message: RemoteMessage): void {
    const store = this.store;
    if (!store) return;
    const groups = store.mappings().filter((m) => m.target === message.target);
    const text =
      message.text.length > this.maxRemoteChars ? `${message.text.slice(0, this.maxRemoteChars)} [cut]` : message.text;
    const line = `${message.sender} (${this.label}): ${text}`;
    const previous = this.postQueues.get(message.target) ?? Promise.resolve();
    const next = previous.then(async () => {
      for (const g of groups) {
        try {
          await this.bot.client.sendGroupText(g.groupId, line);
          this.counters.fromNetwork += 1;
        } catch (error) {
          this.counters.failedFromNetwork += 1;
          this.bot.logger.warn(
            `${this.label}: a line from ${message.target} was not posted to group ${g.groupId} (${error instanceof Error ? error.name : "error"})`,
          );
        }
      }
    });
    this.postQueues.set(message.target, next);
    void next.finally(() => {
      if (this.postQueues.get(message.target) === next) this.postQueues.delete(message.target);
    });
  }

  /** Resolves once every remote line received so far has been posted (tests, and a clean stop). */
  async idle(): Promise<void> {
    await Promise.all([...this.postQueues.values()]);
  }
}
