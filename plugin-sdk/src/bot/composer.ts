import {
  matchesFilter,
  type CommandContext,
  type Context,
  type Filtered,
  type HearsContext,
  type UpdateFilter,
} from "./context.js";

/** Calls the rest of the chain; resolves when it has finished. */
export type NextFunction = () => Promise<void>;

/** A middleware function: do something, call `next()` to pass the update on (or not, to stop it here). */
export type MiddlewareFn<C extends Context> = (ctx: C, next: NextFunction) => unknown;

/** An object that provides middleware (a {@link Composer}, the session plugin). */
export interface MiddlewareObj<C extends Context> {
  middleware(): MiddlewareFn<C>;
}

/** Middleware: a function or an object with `middleware()`. */
export type Middleware<C extends Context> = MiddlewareFn<C> | MiddlewareObj<C>;

/** A registered command and what `/help` says about it. */
export interface CommandInfo {
  name: string;
  description?: string;
}

const flatten = <C extends Context>(m: Middleware<C>): MiddlewareFn<C> =>
  typeof m === "function" ? m : m.middleware();

/**
 * Runs middleware in order; each calls `next` to run the rest (grammY's and
 * Hono's compose). Calling `next` twice is a bug and throws.
 */
export function compose<C extends Context>(middleware: Middleware<C>[]): MiddlewareFn<C> {
  const fns = middleware.map(flatten);
  return async (ctx, next) => {
    const run = async (i: number): Promise<void> => {
      const fn = fns[i];
      if (!fn) return next();
      let called = false;
      await fn(ctx, async () => {
        if (called) throw new Error("next() called more than once by one middleware");
        called = true;
        await run(i + 1);
      });
    };
    await run(0);
  };
}

/** `/name`, `/name args`, or `/name@botname args`. */
const commandPattern = /^\/([A-Za-z0-9_]{1,64})(?:@([^\s]+))?(?:\s+([\s\S]*))?$/;

/** Parses a command line: its name, its target bot (if named), the rest of the line and its arguments. */
export function parseCommand(text: string): { name: string; target?: string; match: string; args: string[] } | null {
  const m = commandPattern.exec(text.trim());
  if (!m) return null;
  const match = (m[3] ?? "").trim();
  return { name: m[1]!.toLowerCase(), ...(m[2] ? { target: m[2] } : {}), match, args: match ? match.split(/\s+/) : [] };
}

/**
 * Builds a middleware chain with grammY's ergonomics: `use`, `on`,
 * `command`, `hears`, `filter`. `Bot` is one; a composer can also be made
 * on its own and `use`d by a bot (a feature in a module of its own).
 */
export class Composer<C extends Context> implements MiddlewareObj<C> {
  private readonly chain: Middleware<C>[] = [];
  private readonly ownCommands: CommandInfo[] = [];
  private readonly children: Composer<C>[] = [];

  /** Adds middleware that sees every update, in the order added. */
  use(...middleware: Middleware<C>[]): this {
    for (const m of middleware) if (m instanceof Composer) this.children.push(m);
    this.chain.push(...middleware);
    return this;
  }

  /** Commands registered here and in composers `use`d here, in order, for the generated `/help`. */
  get commands(): CommandInfo[] {
    return [...this.ownCommands, ...this.children.flatMap((c) => c.commands)];
  }

  /**
   * Handles updates that pass a filter (or any of several).
   * @example bot.on("attachment", async (ctx) => ctx.reply(`got ${ctx.message.attachment.fileName}`));
   */
  on<F extends UpdateFilter>(filter: F | F[], ...middleware: Middleware<Filtered<C, F>>[]): this {
    const filters = Array.isArray(filter) ? filter : [filter];
    return this.filter(
      (ctx): ctx is Filtered<C, F> => filters.some((f) => matchesFilter(ctx.update, f)),
      ...middleware,
    );
  }

  /**
   * Handles `/name args` (also `/name@thisbot args`). `ctx.args` holds the
   * arguments split on whitespace, `ctx.match` the rest of the line. The
   * description, if given, is listed by the generated `/help`.
   * @example bot.command("remind", "/remind 10m tea: a reminder", (ctx) => ctx.reply(ctx.args[0] ?? "when?"));
   */
  command(name: string | string[], description: string, ...middleware: Middleware<CommandContext<C>>[]): this;
  command(name: string | string[], ...middleware: Middleware<CommandContext<C>>[]): this;
  command(
    name: string | string[],
    first: string | Middleware<CommandContext<C>>,
    ...rest: Middleware<CommandContext<C>>[]
  ): this {
    const names = (Array.isArray(name) ? name : [name]).map((n) => n.replace(/^\//, "").toLowerCase());
    for (const n of names) {
      if (!/^[a-z0-9_]{1,64}$/.test(n)) throw new Error(`"${n}" is not a command name (letters, digits and _ only)`);
    }
    const description = typeof first === "string" ? first : undefined;
    const handlers = typeof first === "string" ? rest : [first, ...rest];
    for (const n of names) this.ownCommands.push({ name: n, ...(description ? { description } : {}) });
    const handler = compose(handlers);
    return this.use(async (ctx, next) => {
      const text = ctx.message?.text;
      const parsed = text === undefined ? null : parseCommand(text);
      const forUs =
        parsed && (parsed.target === undefined || parsed.target.toLowerCase() === ctx.bot.username.toLowerCase());
      if (!parsed || !forUs || !names.includes(parsed.name)) return next();
      ctx.command = parsed.name;
      ctx.args = parsed.args;
      ctx.match = parsed.match;
      await handler(ctx as CommandContext<C>, next);
    });
  }

  /**
   * Handles messages whose text matches a regular expression (or equals a
   * string); `ctx.match` holds the match.
   * @example bot.hears(/^(hi|hello)\b/i, (ctx) => ctx.reply("Hello!"));
   */
  hears(trigger: RegExp | string, ...middleware: Middleware<HearsContext<C>>[]): this {
    const handler = compose(middleware);
    return this.use(async (ctx, next) => {
      const text = ctx.message?.text;
      if (text === undefined) return next();
      const match =
        typeof trigger === "string"
          ? text.trim() === trigger
            ? ([text.trim()] as RegExpMatchArray)
            : null
          : text.match(trigger);
      if (!match) return next();
      ctx.match = match;
      await handler(ctx as HearsContext<C>, next);
    });
  }

  /** Runs `middleware` for updates the predicate accepts; others go on down the chain. */
  filter<D extends C>(predicate: (ctx: C) => ctx is D, ...middleware: Middleware<D>[]): this;
  filter(predicate: (ctx: C) => boolean, ...middleware: Middleware<C>[]): this;
  filter(predicate: (ctx: C) => boolean, ...middleware: Middleware<C>[]): this {
    const handler = compose(middleware);
    return this.use(async (ctx, next) => (predicate(ctx) ? handler(ctx, next) : next()));
  }

  /** The whole chain as one middleware function. */
  middleware(): MiddlewareFn<C> {
    return compose(this.chain);
  }
}
