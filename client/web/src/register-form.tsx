/** The first screen of a fresh profile: register an account on a homeserver. */
import { useRef, useState } from "preact/hooks";
import type { JSX } from "preact";
import { register } from "./api";
import type { RegisteredMe, WebLinkCode } from "./api-types";
import { LinkThisDevice } from "./link-device";

/** The register form (and linking to an existing account); `onRegistered` gets the new account. */
export function RegisterForm({
  onRegistered,
  linking,
}: {
  onRegistered: (me: RegisteredMe) => void;
  /** A link to an existing account already waiting for approval. */
  linking?: WebLinkCode | undefined;
}): JSX.Element {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const serverRef = useRef<HTMLInputElement>(null);
  const usernameRef = useRef<HTMLInputElement>(null);
  const inviteRef = useRef<HTMLInputElement>(null);

  const submit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const server = serverRef.current?.value.trim() ?? "";
    const username = usernameRef.current?.value.trim().replace(/^@/, "") ?? "";
    const invite = inviteRef.current?.value.trim() ?? "";
    setBusy(true);
    setError(undefined);
    try {
      onRegistered(await register({ server, username, ...(invite ? { invite } : {}) }));
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure));
      setBusy(false);
      usernameRef.current?.focus();
    }
  };

  return (
    <main class="centered">
      <h1>Welcome to ZimChat</h1>
      <p>This profile has no account yet. Register one on your community's homeserver.</p>
      <form class="register" onSubmit={submit} aria-describedby={error ? "register-error" : undefined}>
        <label for="register-server">Homeserver URL</label>
        <input
          id="register-server"
          name="server"
          type="url"
          required
          placeholder="https://chat.example.org"
          autocomplete="url"
          ref={serverRef}
        />
        <label for="register-username">Username</label>
        <input
          id="register-username"
          name="username"
          required
          autocomplete="username"
          autocapitalize="none"
          spellcheck={false}
          ref={usernameRef}
        />
        <label for="register-invite">
          Invite code <span class="hint">(if the server asks for one)</span>
        </label>
        <input id="register-invite" name="invite" autocomplete="off" ref={inviteRef} />
        {error && (
          <p id="register-error" role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Registering…" : "Register"}
        </button>
      </form>
      <LinkThisDevice linking={linking} onLinked={onRegistered} />
    </main>
  );
}
