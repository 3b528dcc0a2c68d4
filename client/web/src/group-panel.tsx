/**
 * A group's info panel: its members with admin marks; for admins, adding a
 * member by username and removing one; for every member, leaving. Hidden for
 * good if the daemon has no group-management routes.
 */
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, changeGroupMembers, getGroup, leaveGroup } from "./api";
import type { WebGroup } from "./api-types";

interface Props {
  /** The conversation id, `group:<id>`. */
  conversation: string;
  title: string;
  /** Changes when the daemon says the group changed: the panel fetches it again. */
  version: number;
}

let supported = true;

const message = (failure: unknown): string => (failure instanceof Error ? failure.message : String(failure));

/** The "Group info" button and the panel it opens. */
export function GroupPanel({ conversation, title, version }: Props): JSX.Element | null {
  const [open, setOpen] = useState(false);
  const [group, setGroup] = useState<WebGroup>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [confirmLeave, setConfirmLeave] = useState(false);
  const [hidden, setHidden] = useState(!supported);
  const addInput = useRef<HTMLInputElement>(null);

  const fail = (failure: unknown): void => {
    if (failure instanceof ApiError && failure.isMissingRoute()) {
      supported = false;
      setHidden(true);
      return;
    }
    setError(message(failure));
  };

  useEffect(() => {
    setOpen(false);
    setGroup(undefined);
    setError(undefined);
    setNotice(undefined);
    setConfirmLeave(false);
  }, [conversation]);
  useEffect(() => {
    if (open) getGroup(conversation).then(setGroup, fail);
  }, [open, conversation, version]);

  const act = async (action: () => Promise<WebGroup>, done: (group: WebGroup) => string): Promise<void> => {
    setBusy(true);
    setError(undefined);
    setNotice(undefined);
    try {
      const next = await action();
      setGroup(next);
      setNotice(done(next));
    } catch (failure) {
      fail(failure);
    } finally {
      setBusy(false);
    }
  };
  const add = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const names = (addInput.current?.value ?? "")
      .split(/[\s,]+/)
      .map((name) => name.replace(/^@/, ""))
      .filter(Boolean);
    if (!names.length) return;
    await act(
      () => changeGroupMembers(conversation, { add: names }),
      () => {
        if (addInput.current) addInput.current.value = "";
        return `Added ${names.join(", ")}.`;
      },
    );
  };
  const remove = (uuid: string, name: string): Promise<void> =>
    act(
      () => changeGroupMembers(conversation, { remove: [uuid] }),
      () => `Removed ${name}: they cannot read what is sent from now on.`,
    );
  const leave = (): Promise<void> =>
    act(
      () => leaveGroup(conversation),
      () => {
        setConfirmLeave(false);
        return `You left ${title}.`;
      },
    );

  if (hidden) return null;
  return (
    <div class="group-info">
      <button
        type="button"
        class="secondary"
        aria-expanded={open}
        aria-controls="group-panel"
        onClick={() => setOpen(!open)}
      >
        Group info
      </button>
      {open && (
        <section id="group-panel" class="group-panel" aria-labelledby="group-panel-heading">
          <h3 id="group-panel-heading">Members{group ? ` (${group.members.length})` : ""}</h3>
          {!group && !error && <p role="status">Loading the members…</p>}
          {group && (
            <>
              <ul class="members" aria-labelledby="group-panel-heading">
                {group.members.map((m) => (
                  <li key={m.uuid} class="member">
                    <span class="name">
                      {m.name}
                      {m.you && " (you)"}
                    </span>
                    {m.admin && <span class="badge">admin</span>}
                    {group.admin && group.member && !m.you && (
                      <button
                        type="button"
                        class="secondary"
                        disabled={busy}
                        aria-label={`Remove ${m.name} from ${title}`}
                        onClick={() => void remove(m.uuid, m.name)}
                      >
                        Remove
                      </button>
                    )}
                  </li>
                ))}
              </ul>
              {!group.member && <p class="warn">You are no longer a member of this group.</p>}
              {group.member && group.admin && (
                <form class="add-member" onSubmit={add}>
                  <label for="group-add-member">Add a member (username)</label>
                  <div class="row">
                    <input
                      id="group-add-member"
                      ref={addInput}
                      required
                      autocomplete="off"
                      autocapitalize="none"
                      spellcheck={false}
                    />
                    <button type="submit" disabled={busy}>
                      Add
                    </button>
                  </div>
                </form>
              )}
              {group.member && !group.admin && <p class="hint">Only an admin can add or remove members.</p>}
              {group.member &&
                (confirmLeave ? (
                  <div class="confirm" role="group" aria-labelledby="leave-question">
                    <p id="leave-question">Leave {title}? You will no longer get its messages.</p>
                    <div class="row">
                      <button type="button" class="danger" disabled={busy} onClick={() => void leave()}>
                        Leave
                      </button>
                      <button type="button" class="secondary" onClick={() => setConfirmLeave(false)}>
                        Cancel
                      </button>
                    </div>
                  </div>
                ) : (
                  <button type="button" class="secondary leave" onClick={() => setConfirmLeave(true)}>
                    Leave group
                  </button>
                ))}
            </>
          )}
          <p role="status" class="ok">
            {notice}
          </p>
          {error && (
            <p role="alert" class="error">
              {error}
            </p>
          )}
        </section>
      )}
    </div>
  );
}
