/**
 * The page's top level: exchanges the launch token for the session cookie,
 * asks the daemon who this profile is, then shows the register form or the chat.
 */
import { useEffect, useState } from "preact/hooks";
import type { JSX } from "preact";
import { ApiError, getMe, startSession } from "./api";
import type { WebMe, RegisteredMe, WebLinkCode } from "./api-types";
import { Chat } from "./chat";
import { RegisterForm } from "./register-form";

type Phase =
  | { kind: "loading" }
  | { kind: "failed"; message: string }
  | { kind: "register"; linking?: WebLinkCode | undefined }
  | { kind: "chat"; me: RegisteredMe };

/** Takes `#token=...` out of the address (so it is not kept in history or bookmarks) and starts the session. */
async function boot(): Promise<WebMe> {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token) {
    await startSession(token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return getMe();
}

function failure(error: unknown): string {
  if (error instanceof ApiError && error.isUnauthorized())
    return "This page needs the address that `zimchat-chat web` printed (it carries the access token). Open that address again.";
  return error instanceof Error ? error.message : String(error);
}

/** The whole page. */
export function App(): JSX.Element {
  const [phase, setPhase] = useState<Phase>({ kind: "loading" });

  useEffect(() => {
    const start = (): void => {
      boot().then(
        (me) => setPhase(me.registered ? { kind: "chat", me } : { kind: "register", linking: me.linking }),
        (error: unknown) => setPhase({ kind: "failed", message: failure(error) }),
      );
    };
    // A new link pasted into this tab (the daemon restarted on the same port) changes only the fragment: no reload.
    const onHashChange = (): void => {
      if (!new URLSearchParams(location.hash.slice(1)).has("token")) return;
      setPhase({ kind: "loading" });
      start();
    };
    start();
    addEventListener("hashchange", onHashChange);
    return () => removeEventListener("hashchange", onHashChange);
  }, []);

  switch (phase.kind) {
    case "loading":
      return (
        <main class="centered">
          <p role="status">Connecting to the local ZimChat daemon…</p>
        </main>
      );
    case "failed":
      return (
        <main class="centered">
          <h1>ZimChat</h1>
          <p role="alert" class="error">
            {phase.message}
          </p>
        </main>
      );
    case "register":
      return <RegisterForm linking={phase.linking} onRegistered={(me) => setPhase({ kind: "chat", me })} />;
    case "chat":
      return (
        <Chat
          me={phase.me}
          onSessionLost={() =>
            setPhase({
              kind: "failed",
              message:
                "This page's session has ended (the daemon was restarted). Open the new address that `zimchat-chat web` printed.",
            })
          }
        />
      );
  }
}
