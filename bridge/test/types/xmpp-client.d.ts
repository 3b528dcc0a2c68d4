/**
 * The part of `@xmpp/client` 0.14 (no published types) the XMPP adapter's
 * test uses to play an XMPP user in a room.
 */
declare module "@xmpp/client" {
  import type { EventEmitter } from "node:events";

  /** An XML element (@xmpp/xml, ltx). */
  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: (Element | string)[];
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    toString(): string;
  }

  export function xml(
    name: string,
    attrs?: Record<string, string | undefined>,
    ...children: (Element | string)[]
  ): Element;

  /** A client connection: `stanza`, `online`, `offline`, `error` and `status` events. */
  export interface XmppClient extends EventEmitter {
    start(): Promise<unknown>;
    stop(): Promise<void>;
    send(...elements: Element[]): Promise<void>;
    iqCaller: { request(element: Element, timeoutMs?: number): Promise<Element> };
    status: string;
  }

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
