/**
 * Linking devices: on a fresh profile, "Link to an existing account" shows a
 * link code (text and QR) for the primary device to approve, and waits for
 * the daemon's `linked` event; on the primary, "Link another device" takes
 * the new device's code and approves it.
 */
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { approveLink, startLink } from "./api";
import type { RegisteredMe, WebLinkCode } from "./api-types";
import { connectEvents } from "./events";
import { shortTime } from "./messages";

/** An SVG document as an image address (the CSP allows `data:` images, and an <img> runs no script). */
const svgImage = (svg: string): string => `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;

const message = (failure: unknown): string => (failure instanceof Error ? failure.message : String(failure));

/** The new device's side: the homeserver, then the code to approve; `onLinked` once the primary approved it. */
export function LinkThisDevice({
  linking,
  onLinked,
}: {
  /** A link already waiting (after a reload). */
  linking?: WebLinkCode | undefined;
  onLinked: (me: RegisteredMe) => void;
}): JSX.Element {
  const [open, setOpen] = useState(Boolean(linking));
  const [code, setCode] = useState<WebLinkCode | undefined>(linking);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const server = useRef<HTMLInputElement>(null);
  const codeText = useRef<HTMLTextAreaElement>(null);
  const onLinkedRef = useRef(onLinked);
  onLinkedRef.current = onLinked;

  // A new code takes the focus (and so scrolls into view): it is what to act on next.
  useEffect(() => codeText.current?.focus(), [code?.uri]);

  // The daemon says when the primary approved (or the code expired) over the event stream.
  useEffect(() => {
    if (!code) return;
    return connectEvents({
      event: (event) => {
        if (event.type === "linked") onLinkedRef.current(event.me);
        if (event.type === "linkFailed") {
          setCode(undefined);
          setError(event.message);
        }
      },
      linked: () => undefined,
    });
  }, [code]);

  const submit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      setCode(await startLink(server.current?.value.trim() ?? ""));
    } catch (failure) {
      setError(message(failure));
      server.current?.focus();
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="link-this" aria-labelledby="link-this-heading">
      <h2 id="link-this-heading">Already have an account?</h2>
      {!open ? (
        <button type="button" class="secondary" aria-expanded={false} onClick={() => setOpen(true)}>
          Link to an existing account
        </button>
      ) : code ? (
        <div class="link-code">
          <p>
            On the device where your account was created (its primary device), approve this one: in its web client
            choose "Link another device" and paste the code below, or run{" "}
            <code>zimchat-chat approve-link '&lt;code&gt;'</code>, or scan the QR code.
          </p>
          <img class="qr" src={svgImage(code.qrSvg)} alt="QR code of the link code" />
          <label for="link-code-text">Link code</label>
          <textarea id="link-code-text" ref={codeText} class="code" readOnly rows={3} value={code.uri} />
          <p role="status">
            Waiting for the approval… The code works until {shortTime(code.expiresAt)}. It holds no secret.
          </p>
        </div>
      ) : (
        <form class="register" onSubmit={submit}>
          <label for="link-server">Homeserver URL of your account</label>
          <input
            id="link-server"
            type="url"
            required
            placeholder="https://chat.example.org"
            autocomplete="url"
            ref={server}
          />
          <button type="submit" disabled={busy}>
            {busy ? "Asking the homeserver…" : "Show a link code"}
          </button>
        </form>
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </section>
  );
}

/** The primary device's side: paste a new device's link code and approve it. */
export function LinkAnotherDevice({ me }: { me: RegisteredMe }): JSX.Element | null {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const input = useRef<HTMLTextAreaElement>(null);

  // Only the primary device approves; other devices do not offer it.
  if (me.deviceId !== 1) return null;

  const submit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    setNotice(undefined);
    try {
      await approveLink(input.current?.value.trim() ?? "");
      if (input.current) input.current.value = "";
      setNotice("Approved: the new device is being set up. It shows your chats once it is ready.");
    } catch (failure) {
      setError(message(failure));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="link-another">
      <button
        type="button"
        class="secondary"
        aria-expanded={open}
        aria-controls="link-another-form"
        onClick={() => setOpen(!open)}
      >
        Link another device
      </button>
      {open && (
        <form id="link-another-form" class="verify" onSubmit={submit}>
          <label for="link-another-code">
            Link code <span class="hint">(shown by the new device: zimchat-link:?…)</span>
          </label>
          <textarea id="link-another-code" ref={input} rows={3} required autocomplete="off" spellcheck={false} />
          <button type="submit" disabled={busy}>
            {busy ? "Approving…" : "Approve"}
          </button>
          <p role="status" class="ok">
            {notice}
          </p>
          {error && (
            <p role="alert" class="error">
              {error}
            </p>
          )}
        </form>
      )}
    </div>
  );
}
