/** The left column: a field to start a chat by username, and the conversations with unread counts. */
import type { JSX } from "preact";
import { useRef } from "preact/hooks";
import type { WebConversation } from "./api-types";
import { NewGroupForm } from "./new-group-form";

interface Props {
  conversations: WebConversation[];
  selected: string | undefined;
  onSelect: (conversation: WebConversation) => void;
  onNewChat: (username: string) => void;
  onNewGroup: (title: string, members: string[]) => Promise<void>;
  /** Shown below the list (after it in the Tab order): account actions such as linking a device. */
  footer?: JSX.Element | undefined;
}

/** The conversation list and the "new chat" form above it. */
export function ConversationList({
  conversations,
  selected,
  onSelect,
  onNewChat,
  onNewGroup,
  footer,
}: Props): JSX.Element {
  const input = useRef<HTMLInputElement>(null);
  const submit = (event: SubmitEvent): void => {
    event.preventDefault();
    const username = input.current?.value.trim().replace(/^@/, "") ?? "";
    if (!username || !input.current) return;
    input.current.value = "";
    onNewChat(username);
  };

  return (
    <nav class="sidebar" aria-label="Conversations">
      <form class="new-chat" onSubmit={submit}>
        <label for="new-chat">New chat with (username)</label>
        <div class="row">
          <input id="new-chat" ref={input} required autocomplete="off" autocapitalize="none" spellcheck={false} />
          <button type="submit">Start</button>
        </div>
      </form>
      <NewGroupForm onCreate={onNewGroup} />
      <h2 id="conversations-heading">Conversations</h2>
      {conversations.length === 0 ? (
        <p class="empty">No conversations yet.</p>
      ) : (
        <ul class="conversations" aria-labelledby="conversations-heading">
          {conversations.map((c) => (
            <li key={c.id}>
              <button
                type="button"
                class="conversation"
                data-conversation={c.id}
                aria-current={c.id === selected ? "true" : undefined}
                onClick={() => onSelect(c)}
              >
                <span class="title">
                  {c.title}
                  {c.kind === "group" && <span class="tag"> group</span>}
                  {c.bridges && (
                    <span class="tag bridged" title="Bridged: messages leave ZimChat in plaintext">
                      {" "}
                      bridged
                    </span>
                  )}
                  {c.keyChanged && <span class="tag key-changed"> safety number changed</span>}
                </span>
                {c.unread > 0 && (
                  <span class="unread">
                    {c.unread}
                    <span class="visually-hidden"> unread</span>
                  </span>
                )}
                {c.last && (
                  <span class="last">
                    {c.last.outgoing ? "You: " : ""}
                    {c.last.text}
                  </span>
                )}
              </button>
            </li>
          ))}
        </ul>
      )}
      {footer}
    </nav>
  );
}
