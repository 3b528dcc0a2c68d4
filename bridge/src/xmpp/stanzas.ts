/** Reading and naming MUC stanzas: namespaces, JID parts, status codes, error conditions. */
import type { Element } from "@xmpp/component";

/** XEP-0045 joins. */
export const NS_MUC = "http://jabber.org/protocol/muc";
/** XEP-0045 occupant info and status codes. */
export const NS_MUC_USER = "http://jabber.org/protocol/muc#user";
/** XEP-0045 room configuration (the instant-room form). */
export const NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner";
/** XEP-0004 data forms. */
export const NS_DATA = "jabber:x:data";
/** XEP-0030 disco#info (the confirmation and keepalive iq). */
export const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
/** XEP-0203 delayed delivery (room history). */
export const NS_DELAY = "urn:xmpp:delay";
/** RFC 6120 stanza error conditions. */
export const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

/** Exponential backoff with jitter: a random delay in [minMs, min(maxMs, minMs·2^failures)]. */
export function backoff(failures: number, minMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(failures, 30));
  return Math.round(minMs + Math.random() * (ceiling - minMs));
}

/** The bare part of a JID (`room@muc.example`). */
export function bareOf(jid: string): string {
  const slash = jid.indexOf("/");
  return slash === -1 ? jid : jid.slice(0, slash);
}

/** The resource of a JID (an occupant nick), or "". */
export function resourceOf(jid: string): string {
  const slash = jid.indexOf("/");
  return slash === -1 ? "" : jid.slice(slash + 1);
}

/** The MUC status codes of a presence (`110` self, `201` created…). */
export function statusCodes(presence: Element): Set<string> {
  const x = presence.getChild("x", NS_MUC_USER);
  const codes = new Set<string>();
  for (const status of x?.getChildren("status") ?? [])
    if (status.attrs.code !== undefined) codes.add(status.attrs.code);
  return codes;
}

/** The defined condition of a stanza error (`conflict`, `forbidden`…). */
export function errorCondition(stanza: Element): string {
  const error = stanza.getChild("error");
  const condition = error?.getChildElements().find((el) => el.attrs.xmlns === NS_STANZAS);
  return condition?.name ?? "undefined-condition";
}

/** An error as a log line: its condition or message (never stanza content). */
export function describe(error: unknown): string {
  if (error instanceof Error) return (error as Error & { condition?: string }).condition ?? error.message;
  return String(error);
}
