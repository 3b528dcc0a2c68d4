/**
 * Names on the XMPP side: room JIDs, puppet localparts and occupant nicks,
 * and text made safe for an XML stream.
 */

/** Characters XML 1.0 forbids (a stream carrying one is closed by the server with `not-well-formed`). */
const XML_FORBIDDEN =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Removes what XML 1.0 cannot carry (control characters other than tab and newlines, lone surrogates). */
export function xmlSafe(text: string): string {
  return text.replace(XML_FORBIDDEN, "");
}

const LOCAL_RE = /^[^\s"&'/:<>@\\]{1,256}$/;
const DOMAIN_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

/**
 * A room's bare JID in lower case (`room@muc.example`), from a bare JID, an
 * `xmpp:` URI or a local part alone (then on `mucDomain`); null when it is
 * not a room JID.
 */
export function parseRoomJid(input: string, mucDomain: string): string | null {
  let s = input.trim().toLowerCase();
  if (s.startsWith("xmpp:")) s = s.slice("xmpp:".length).replace(/\?join$/, "");
  if (s === "" || s.includes("/")) return null;
  const at = s.indexOf("@");
  const local = at === -1 ? s : s.slice(0, at);
  const domain = at === -1 ? mucDomain : s.slice(at + 1);
  if (!LOCAL_RE.test(local) || !DOMAIN_RE.test(domain)) return null;
  return `${local}@${domain}`;
}

/** A JID local part from a display name: lower case, ASCII letters, digits, `.`, `_`, `-`; never empty. */
export function localpartOf(name: string): string {
  const s = name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "_")
    .replace(/^[._-]+|[._-]+$/g, "")
    .slice(0, 48);
  return s === "" ? "user" : s;
}

/** An occupant nick from a display name: no control characters, at most 64 characters; `fallback` when empty. */
export function nickOf(name: string, fallback: string): string {
  const s = [
    ...xmlSafe(name)
      .replace(/[\u0000-\u001F\u007F]/g, "")
      .trim(),
  ]
    .slice(0, 64)
    .join("");
  return s === "" ? fallback : s;
}

/** The nick to try after `attempt` conflicts (409): `name[zim]`, then `name[zim]2`, `name[zim]3`… */
export function nickAfterConflict(base: string, attempt: number): string {
  return attempt <= 1 ? `${base}[zim]` : `${base}[zim]${attempt}`;
}

/** Keeps one local part per ZimChat account id, unique among them. */
export class PuppetNames {
  private readonly bySender = new Map<string, string>();
  private readonly used = new Set<string>();

  /**
   * The local part of `senderId`'s puppet: the one it had (`stored`, from the
   * bridge's store, kept when still free), else one made from `senderName`.
   * `changed` says whether it differs from `stored` (the store should record it).
   */
  localpart(senderId: string, senderName: string, stored?: string): { localpart: string; changed: boolean } {
    const known = this.bySender.get(senderId);
    if (known !== undefined) return { localpart: known, changed: known !== stored };
    const base = stored !== undefined && localpartOf(stored) === stored ? stored : localpartOf(senderName);
    let candidate = base;
    for (let n = 2; this.used.has(candidate); n++) candidate = `${base}-${n}`;
    this.bySender.set(senderId, candidate);
    this.used.add(candidate);
    return { localpart: candidate, changed: candidate !== stored };
  }
}
