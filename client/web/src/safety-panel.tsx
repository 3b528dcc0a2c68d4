/**
 * A direct conversation's safety number: the digits and QR code to compare
 * with the other person's screen, whether they are verified, and a form to
 * verify them. Hidden for good if the daemon has no safety-number routes.
 */
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, getSafetyNumber, verifySafetyNumber } from "./api";
import type { WebSafetyNumber } from "./api-types";

interface Props {
  /** The other account's id (the conversation id). */
  user: string;
  name: string;
  /** Their key changed after they were verified (the conversation's `keyChanged`): the number is fetched again. */
  keyChanged: boolean;
  /** Bumped to open the panel from elsewhere (the key-change banner's link). */
  openRequest: number;
  /** They were verified: the conversation list changes (a block lifted). */
  onVerified: () => void;
}

/** An SVG document as an image address (the CSP allows `data:` images, and an <img> runs no script). */
const svgImage = (svg: string): string => `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;

let supported = true;

/** The "Safety number" button and the panel it opens. */
export function SafetyPanel({ user, name, keyChanged, openRequest, onVerified }: Props): JSX.Element | null {
  const [open, setOpen] = useState(false);
  const [safety, setSafety] = useState<WebSafetyNumber>();
  const [error, setError] = useState<string>();
  const [hidden, setHidden] = useState(!supported);
  const input = useRef<HTMLInputElement>(null);

  const fail = (failure: unknown): void => {
    if (failure instanceof ApiError && failure.isMissingRoute()) {
      supported = false;
      setHidden(true);
      return;
    }
    setError(failure instanceof Error ? failure.message : String(failure));
  };

  useEffect(() => {
    setOpen(false);
    setSafety(undefined);
    setError(undefined);
  }, [user]);
  useEffect(() => setSafety(undefined), [keyChanged]);
  useEffect(() => {
    if (openRequest) setOpen(true);
  }, [openRequest]);
  useEffect(() => {
    if (open && !safety) getSafetyNumber(user).then(setSafety, fail);
  }, [open, user, safety]);

  const verify = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    setError(undefined);
    try {
      setSafety(await verifySafetyNumber(user, input.current?.value.replace(/\s+/g, "") || undefined));
      onVerified();
    } catch (failure) {
      fail(failure);
    }
  };

  if (hidden) return null;
  return (
    <div class="safety">
      <button
        type="button"
        class="secondary"
        aria-expanded={open}
        aria-controls="safety-panel"
        onClick={() => setOpen(!open)}
      >
        Safety number
        {safety?.verified && <span class="verified"> (verified)</span>}
      </button>
      {open && (
        <div id="safety-panel" class="safety-panel">
          {safety ? (
            <>
              <p>
                Compare this number with the one on {name}'s screen, in person or over a call you trust. If they match,
                nobody is reading along.
              </p>
              <p class="digits" aria-label={`Safety number: ${safety.digits}`}>
                {safety.digits}
              </p>
              <img class="qr" src={svgImage(safety.qrSvg)} alt={`QR code of the safety number with ${name}`} />
              <p class={safety.verified ? "ok" : "warn"} role="status">
                {safety.verified
                  ? `${name} is verified.`
                  : safety.keyChanged
                    ? `${name}'s safety number has changed: compare the new number, then mark it verified.`
                    : `${name} is not verified yet.`}
              </p>
              {!safety.verified && (
                <form class="verify" onSubmit={verify}>
                  <label for="safety-number-input">
                    Their number <span class="hint">(leave empty if you compared it in person)</span>
                  </label>
                  <div class="row">
                    <input id="safety-number-input" ref={input} inputMode="numeric" autocomplete="off" />
                    <button type="submit">Mark as verified</button>
                  </div>
                </form>
              )}
            </>
          ) : (
            !error && <p role="status">Loading the safety number…</p>
          )}
          {error && (
            <p role="alert" class="error">
              {error}
            </p>
          )}
        </div>
      )}
    </div>
  );
}
