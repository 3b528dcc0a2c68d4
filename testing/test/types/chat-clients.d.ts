/**
 * Minimal types for the IRC and XMPP client libraries the chat-server tests
 * drive: irc-framework 4.14, @xmpp/client 0.14 and @xmpp/component 0.13 ship
 * no declarations (and there is no @types package for them). Only what the
 * tests call is declared.
 */

declare module "irc-framework" {
  import type { EventEmitter } from "node:events";

  /** Options of `new Client()` / `connect()` (irc-framework `src/client.js` defaults). */
  export interface ClientOptions {
    host: string;
    port: number;
    nick: string;
    username?: string;
    gecos?: string;
    /** @default true (only after 5 s registered, with a 1–6 s first wait) */
    auto_reconnect?: boolean;
    auto_reconnect_max_retries?: number;
    /** Lines longer than this are split by `say`. @default 350 */
    message_max_length?: number;
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

  /** A `join` event. */
  export interface JoinEvent {
    nick: string;
    channel: string;
  }

  export class Client extends EventEmitter {
    constructor(options?: Partial<ClientOptions>);
    connect(options?: Partial<ClientOptions>): void;
    join(channel: string, key?: string): void;
    say(target: string, message: string): void;
    quit(message?: string): void;
    connected: boolean;
    user: { nick: string };
  }

  const irc: { Client: typeof Client };
  export default irc;
}

declare module "@xmpp/client" {
  import type { EventEmitter } from "node:events";

  /** An XML element (@xmpp/xml, ltx). */
  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: (Element | string)[];
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildText(name: string, xmlns?: string): string | null;
    toString(): string;
  }

  export function xml(
    name: string,
    attrs?: Record<string, string | undefined>,
    ...children: (Element | string)[]
  ): Element;

  export interface JID {
    local: string;
    domain: string;
    resource: string;
    bare(): JID;
    toString(): string;
  }

  /** A client or component connection: `stanza`, `online`, `offline`, `error` and `status` events. */
  export interface XmppEntity extends EventEmitter {
    start(): Promise<JID>;
    stop(): Promise<void>;
    send(...elements: Element[]): Promise<void>;
    iqCaller: { request(element: Element, timeoutMs?: number): Promise<Element> };
    jid: JID | null;
    status: string;
  }

  export interface ClientOptions {
    /** `xmpp://host:port` (TCP; STARTTLS only when offered) */
    service: string;
    domain?: string;
    username?: string;
    password?: string;
    resource?: string;
  }

  export function client(options: ClientOptions): XmppEntity;
}

declare module "@xmpp/component" {
  import type { XmppEntity, xml as xmlFunction } from "@xmpp/client";

  export const xml: typeof xmlFunction;
  /** An XEP-0114 component: `service` is `xmpp://host:componentPort`, `domain` the component's name. */
  export function component(options: { service: string; domain: string; password: string }): XmppEntity;
}
