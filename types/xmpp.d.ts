/**
 * Types for @xmpp/client 0.14 and @xmpp/component 0.13, which ship no
 * declarations (and have no @types package). Only what the bridge and the tests
 * call is declared; add to it when code needs more. Wired into
 * bridge/tsconfig.json and testing/tsconfig.json.
 *
 * Both packages re-export `xml` (@xmpp/xml, ltx elements) and `jid` (@xmpp/jid),
 * and build on the same connection class, so @xmpp/component reuses the types
 * declared for @xmpp/client.
 */

declare module "@xmpp/client" {
  import type { EventEmitter } from "node:events";
  import type { Socket } from "node:net";

  /** An XML element (ltx). */
  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: (Element | string)[];
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    toString(): string;
  }

  /** Builds an element; string children are escaped. */
  export function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: (Element | string)[]
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

  /** A client or component connection. Emits `stanza`, `error`, `status`, `online`, `disconnect`, `offline`. */
  export interface XmppEntity extends EventEmitter {
    status: string;
    socket: Socket | null;
    /** Our full JID once online. */
    jid: JID | null;
    /** The built-in reconnect (fixed 1 s delay). */
    reconnect: { stop(): void };
    iqCaller: { request(element: Element, timeoutMs?: number): Promise<Element> };
    /** Connects, opens the stream and authenticates; resolves with our JID when online. */
    start(): Promise<JID>;
    /** Closes the stream, then the socket. */
    stop(): Promise<unknown>;
    send(element: Element): Promise<void>;
  }

  export type XmppClient = XmppEntity;

  export interface ClientOptions {
    /** `xmpp://host:port` (TCP; STARTTLS only when offered). */
    service: string;
    domain?: string;
    username?: string;
    password?: string;
    resource?: string;
  }

  export function client(options: ClientOptions): XmppClient;
}

/** The package is CommonJS; Node's named-export detection finds `component`, `xml` and `jid`. */
declare module "@xmpp/component" {
  import type { XmppEntity } from "@xmpp/client";

  export type { Element, JID } from "@xmpp/client";
  export { xml, jid } from "@xmpp/client";

  /** An XEP-0114 connection. */
  export type Component = XmppEntity;

  export interface ComponentOptions {
    /** `xmpp://host:componentPort`. */
    service: string;
    /** The component's domain. */
    domain: string;
    password: string;
  }

  export function component(options: ComponentOptions): Component;
}
