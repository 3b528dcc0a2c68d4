/**
 * The part of `@xmpp/component` 0.13 (no published types) that the XMPP
 * adapter uses. The package is CommonJS; Node's named-export detection finds
 * `component`, `xml` and `jid`.
 */
declare module "@xmpp/component" {
  import type { EventEmitter } from "node:events";
  import type { Socket } from "node:net";

  /** An XML element (ltx). */
  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<Element | string>;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    is(name: string, xmlns?: string): boolean;
    toString(): string;
  }

  /** Builds an element; string children are escaped. */
  export function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: Array<Element | string>
  ): Element;

  /** A parsed JID. */
  export interface JID {
    local: string;
    domain: string;
    resource: string;
    bare(): JID;
    toString(): string;
  }

  /** Parses a JID (little validation). */
  export function jid(address: string): JID;

  /** An XEP-0114 connection. Emits `stanza`, `error`, `status`, `online`, `disconnect`, `offline`. */
  export interface Component extends EventEmitter {
    status: string;
    socket: Socket | null;
    jid: JID | null;
    /** The built-in reconnect (fixed 1 s delay), which the adapter turns off. */
    reconnect: { stop(): void };
    /** Connects, opens the stream and authenticates; resolves when online. */
    start(): Promise<JID>;
    /** Closes the stream, then the socket. */
    stop(): Promise<unknown>;
    send(element: Element): Promise<void>;
  }

  export interface ComponentOptions {
    /** `xmpp://host:port`. */
    service: string;
    domain: string;
    password: string;
  }

  export function component(options: ComponentOptions): Component;
}
