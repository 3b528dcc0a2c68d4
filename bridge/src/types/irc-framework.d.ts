// The parts of irc-framework (4.x, untyped) the IRC adapter uses.
declare module "irc-framework" {
  import { EventEmitter } from "node:events";

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
    auto_reconnect?: boolean;
    ping_interval?: number;
    ping_timeout?: number;
    message_max_length?: number;
    version?: string | null;
  }

  export interface MessageEvent {
    nick: string;
    ident: string;
    hostname: string;
    target: string;
    message: string;
    type: "privmsg" | "notice" | "action";
  }

  class Client extends EventEmitter {
    constructor(options?: Partial<ClientOptions>);
    connect(options?: ClientOptions): void;
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
  export type { Client };
}

declare module "irc-framework/src/linebreak.js" {
  const linebreak: {
    lineBreak(
      text: string,
      options: { bytes: number; allowBreakingWords: boolean; allowBreakingGraphemes: boolean },
    ): IterableIterator<string>;
  };
  export default linebreak;
}
