/** "New group": a name and the members' usernames; hidden for good if the daemon cannot create groups. */
import type { JSX } from "preact";
import { useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

let supported = true;

/** The "New group" button and the form it opens; `onCreate` creates the group and opens it. */
export function NewGroupForm({
  onCreate,
}: {
  onCreate: (title: string, members: string[]) => Promise<void>;
}): JSX.Element | null {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [hidden, setHidden] = useState(!supported);
  const title = useRef<HTMLInputElement>(null);
  const members = useRef<HTMLInputElement>(null);

  const submit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const names = (members.current?.value ?? "")
      .split(/[\s,]+/)
      .map((name) => name.replace(/^@/, ""))
      .filter(Boolean);
    setBusy(true);
    setError(undefined);
    try {
      await onCreate(title.current?.value.trim() ?? "", names);
      setOpen(false);
    } catch (failure) {
      if (failure instanceof ApiError && failure.isMissingRoute()) {
        supported = false;
        setHidden(true);
        return;
      }
      setError(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };

  if (hidden) return null;
  return (
    <div class="new-group">
      <button
        type="button"
        class="secondary"
        aria-expanded={open}
        aria-controls="new-group-form"
        onClick={() => setOpen(!open)}
      >
        New group
      </button>
      {open && (
        <form id="new-group-form" onSubmit={submit}>
          <label for="new-group-title">Group name</label>
          <input id="new-group-title" ref={title} required autocomplete="off" />
          <label for="new-group-members">
            Members <span class="hint">(usernames, separated by commas)</span>
          </label>
          <input
            id="new-group-members"
            ref={members}
            required
            autocomplete="off"
            autocapitalize="none"
            spellcheck={false}
          />
          {error && (
            <p role="alert" class="error">
              {error}
            </p>
          )}
          <button type="submit" disabled={busy}>
            {busy ? "Creating…" : "Create group"}
          </button>
        </form>
      )}
    </div>
  );
}
