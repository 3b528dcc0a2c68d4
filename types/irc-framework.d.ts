/**
 * Types for irc-framework 4.14, which ships no declarations (and has no @types
 * package). Only what the bridge and the tests call is declared; add to it when
 * code needs more. Wired into bridge/tsconfig.json and testing/tsconfig.json.
 */

declare module "irc-framework" {
  import type { EventEmitter } from "node:events";

  /** Options of `new Client()` / `connect()` (defaults from irc-framework's `src/client.js`). */
  export interface ClientOptions {
    host: string;
    port: number;
    nick: string;
    username?: string;
    gecos?: string;
    tls?: boolean;
    rejectUnauthorized?: boolean;
    /** SASL PLAIN credentials. */
    account?: { account: string; password: string };
    /** @default true */
    auto_reconnect?: boolean;
    /** @default 3 */
    auto_reconnect_max_retries?: number;
    /** Seconds. @default 30 */
    ping_interval?: number;
    /** Seconds. @default 120 */
    ping_timeout?: number;
    /** Lines longer than this are split by `say`. @default 350 */
    message_max_length?: number;
    /** The CTCP VERSION reply; `null` sends none. */
    version?: string | null;
  }

  /** A `message` (and `privmsg`, `notice`, `action`) event. */
  export interface MessageEvent {
    type: "privmsg" | "notice" | "action";
    nick: string;
    ident: string;
    hostname: string;
    target: string;
    message: string;
  }

  export class Client extends EventEmitter {
    constructor(options?: Partial<ClientOptions>);
    connect(options?: ClientOptions): void;
    /** Sends one line, the arguments joined by spaces (the last one prefixed with `:` when needed). */
    raw(...args: string[]): void;
    quit(message?: string): void;
    join(channel: string, key?: string): void;
    part(channel: string, message?: string): void;
    changeNick(nick: string): void;
    say(target: string, message: string): void;
    readonly user: { nick: string };
    readonly connected: boolean;
    readonly connection: { connected: boolean; end(data?: string): void };
  }

  const irc: { Client: typeof Client };
  export default irc;
}

/** The UTF-8-aware line splitter `say` uses; the IRC adapter splits long messages with it. */
declare module "irc-framework/src/linebreak.js" {
  const linebreak: {
    lineBreak(
      text: string,
      options: { bytes: number; allowBreakingWords: boolean; allowBreakingGraphemes: boolean },
    ): IterableIterator<string>;
  };
  export default linebreak;
}
