import type { Context } from "./context.js";
import type { MiddlewareFn, MiddlewareObj } from "./composer.js";

type MaybePromise<T> = T | Promise<T>;

/**
 * Where sessions are kept, one value per key (grammY's `StorageAdapter`).
 * Values must survive `JSON.stringify`.
 */
export interface StorageAdapter<T> {
  read(key: string): MaybePromise<T | undefined>;
  write(key: string, value: T): MaybePromise<void>;
  delete(key: string): MaybePromise<void>;
  /** Every stored key (for work at start-up, such as re-arming timers). */
  keys(): MaybePromise<string[]>;
}

/** Sessions in memory: gone when the process ends (tests, throwaway bots). */
export class MemorySessionStorage<T> implements StorageAdapter<T> {
  private readonly values = new Map<string, string>();

  read(key: string): T | undefined {
    const json = this.values.get(key);
    return json === undefined ? undefined : (JSON.parse(json) as T);
  }
  write(key: string, value: T): void {
    this.values.set(key, JSON.stringify(value));
  }
  delete(key: string): void {
    this.values.delete(key);
  }
  keys(): string[] {
    return [...this.values.keys()];
  }
}

/**
 * Widens a context with `ctx.session` (add it to your context type: `type MyContext = Context &
 * SessionFlavor<MySession>`).
 */
export interface SessionFlavor<S> {
  /**
   * This conversation's session: read and change it; it is saved after the handlers finish. Set it to `null` to delete
   * it.
   */
  session: S;
}

/** Options for {@link session}. */
export interface SessionOptions<S, C extends Context> {
  /** A new session's value (called for each new key). */
  initial: () => S;
  /** @default a new {@link MemorySessionStorage} */
  storage?: StorageAdapter<S>;
  /**
   * Which session an update belongs to; `undefined` for none (then
   * `ctx.session` throws). @default the conversation: the author's account
   * id for direct messages, `group:<id>` for groups (`ctx.chat.id`)
   */
  getSessionKey?: (ctx: C) => string | undefined;
}

/**
 * The session middleware, plus access to sessions outside handlers (a timer
 * that fires later, start-up work). Reads and writes of one key never
 * interleave: a handler's session and an {@link update} take turns.
 */
export class Sessions<S, C extends Context & SessionFlavor<S>> implements MiddlewareObj<C> {
  /** Where the sessions live. */
  readonly storage: StorageAdapter<S>;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly options: SessionOptions<S, C>) {
    this.storage = options.storage ?? new MemorySessionStorage<S>();
  }

  middleware(): MiddlewareFn<C> {
    return async (ctx, next) => {
      const key = this.options.getSessionKey ? this.options.getSessionKey(ctx) : ctx.chat?.id;
      if (key === undefined) {
        Object.defineProperty(ctx, "session", {
          configurable: true,
          get: () => {
            throw new Error(`this ${ctx.update.type} update has no session (no conversation to key it by)`);
          },
        });
        return next();
      }
      await this.locked(key, async () => {
        const stored = await this.storage.read(key);
        const storedJson = stored === undefined ? undefined : JSON.stringify(stored);
        let current: S | undefined = stored;
        let deleted = false;
        Object.defineProperty(ctx, "session", {
          configurable: true,
          enumerable: true,
          get: () => {
            if (current === undefined) {
              current = this.options.initial();
              deleted = false;
            }
            return current;
          },
          set: (value: S | null | undefined) => {
            current = value ?? undefined;
            deleted = value === null || value === undefined;
          },
        });
        await next();
        if (deleted) {
          if (stored !== undefined) await this.storage.delete(key);
        } else if (current !== undefined && JSON.stringify(current) !== storedJson) {
          await this.storage.write(key, current);
        }
      });
    };
  }

  /** A session's stored value, or undefined. */
  async read(key: string): Promise<S | undefined> {
    return this.locked(key, async () => this.storage.read(key));
  }

  /**
   * Changes a session outside a handler (not from inside one: use
   * `ctx.session` there). `change` may modify the value in place or return a
   * new one; returning `null` deletes the session.
   */
  async update(key: string, change: (value: S) => MaybePromise<S | null | void>): Promise<S | null> {
    return this.locked(key, async () => {
      const value = (await this.storage.read(key)) ?? this.options.initial();
      const result = await change(value);
      if (result === null) {
        await this.storage.delete(key);
        return null;
      }
      const next = result === undefined ? value : result;
      await this.storage.write(key, next);
      return next;
    });
  }

  /** Every stored session key. */
  async keys(): Promise<string[]> {
    return this.storage.keys();
  }

  private locked<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const run = previous.then(work, work);
    const settled = run.catch(() => {});
    this.locks.set(key, settled);
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    });
    return run;
  }
}

/**
 * Per-conversation sessions (grammY's `session`).
 * @example
 * type MyContext = Context & SessionFlavor<{ count: number }>;
 * const bot = new Bot<MyContext>({ dir: "./counter-bot" });
 * bot.use(session({ initial: () => ({ count: 0 }), storage: new SqliteSessionStorage("./counter-bot/sessions.db") }));
 * bot.on("message", (ctx) => ctx.reply(`message number ${++ctx.session.count}`));
 */
export function session<S, C extends Context & SessionFlavor<S>>(options: SessionOptions<S, C>): Sessions<S, C> {
  return new Sessions(options);
}
