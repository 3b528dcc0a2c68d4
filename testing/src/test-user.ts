import {
  MemoryDeviceStore,
  ZimClient,
  type AttachmentInput,
  type AttachmentPointer,
  type GroupState,
  type MessageEvent,
  type UploadOptions,
  type ZimClientEvents,
} from "@zimchat/client";

/** Options for {@link TestUser.nextMessage}. */
export interface NextMessageOptions {
  /** @default 10 s */
  timeoutMs?: number;
  /** Only a message in this conversation (an account id or `group:<id>`); others stay queued. */
  conversation?: string;
}

/**
 * A scripted user: a real ZimChat device (in memory) connected to the test
 * homeserver, with a queue of what it received.
 * @example
 * await alice.send("echobot", "hi");
 * assert.equal((await alice.nextMessage()).text, "hi");
 */
export class TestUser {
  /** Every message received, in order. */
  readonly messages: MessageEvent[] = [];
  /** Received and not yet returned by nextMessage. */
  private readonly unread: MessageEvent[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(
    /** The user's device: everything the SDK offers. */
    readonly client: ZimClient,
  ) {
    client.on("message", (m) => {
      if (m.outgoing) return;
      this.messages.push(m);
      this.unread.push(m);
      for (const waiter of [...this.waiters]) waiter();
    });
  }

  /** Registers a user and connects it. */
  static async register(serverUrl: string, username: string, inviteToken?: string): Promise<TestUser> {
    const client = await ZimClient.register({
      serverUrl,
      username,
      store: new MemoryDeviceStore(),
      ...(inviteToken ? { inviteToken } : {}),
    });
    const user = new TestUser(client);
    await client.connect();
    return user;
  }

  get username(): string {
    return this.client.local.username;
  }

  /** The account id. */
  get uuid(): string {
    return this.client.local.uuid;
  }

  /** Sends a text to a user (username or account id) or a group (`group:<id>`). */
  async send(to: string, text: string): Promise<void> {
    if (to.startsWith("group:")) await this.client.sendGroupText(to.slice(6), text);
    else await this.client.sendText(to, text);
  }

  /** Sends a file (path, bytes or stream) to a user or a group (`group:<id>`). */
  async sendFile(
    to: string,
    source: AttachmentInput,
    options: UploadOptions & { caption?: string } = {},
  ): Promise<AttachmentPointer> {
    const sent = to.startsWith("group:")
      ? await this.client.sendGroupAttachment(to.slice(6), source, options)
      : await this.client.sendAttachment(to, source, options);
    return sent.attachment;
  }

  /** Creates a group with this user as admin. */
  async createGroup(title: string, members: string[]): Promise<GroupState> {
    return this.client.createGroup(title, members);
  }

  /**
   * The next message not returned before (in the conversation, if given),
   * waiting for it.
   * @throws Error after the timeout, naming the user and what it did receive
   */
  nextMessage(options: NextMessageOptions = {}): Promise<MessageEvent> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const take = (): boolean => {
        const i = this.unread.findIndex(
          (m) => options.conversation === undefined || m.conversation === options.conversation,
        );
        if (i >= 0) {
          // Messages of other conversations stay queued.
          const [m] = this.unread.splice(i, 1);
          this.waiters.delete(waiter);
          clearTimeout(timer);
          resolve(m!);
          return true;
        }
        return false;
      };
      const waiter = (): void => void take();
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(
            `${this.username} received no message${options.conversation ? ` in ${options.conversation}` : ""} within ${timeoutMs} ms (${this.unread.length} other(s) queued)`,
          ),
        );
      }, timeoutMs);
      if (!take()) this.waiters.add(waiter);
    });
  }

  /**
   * Waits `ms`, then resolves if no message is waiting unread (none arrived
   * that {@link nextMessage} has not returned).
   * @throws Error naming how many are waiting
   */
  async expectNoMessage(ms = 1_000): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.unread.length)
      throw new Error(`${this.username} received ${this.unread.length} message(s) it should not have`);
  }

  /** Resolves with the next emission of a client event, or rejects after `timeoutMs`. */
  nextEvent<E extends keyof ZimClientEvents>(event: E, timeoutMs = 10_000): Promise<ZimClientEvents[E]> {
    return new Promise((resolve, reject) => {
      const listener = (...args: ZimClientEvents[E]): void => {
        clearTimeout(timer);
        resolve(args);
      };
      const timer = setTimeout(() => {
        this.client.off(event, listener as never);
        reject(new Error(`${this.username}: no ${event} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.client.once(event, listener as never);
    });
  }

  /** Closes the device. */
  async close(): Promise<void> {
    await this.client.close();
  }
}
