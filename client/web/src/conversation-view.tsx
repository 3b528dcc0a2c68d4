/** The right column: one conversation's messages and the composer (Enter sends, Shift+Enter starts a new line). */
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { WebMessage } from "./api-types";
import { shortTime, toDate } from "./messages";
import { GroupPanel } from "./group-panel";
import { SafetyPanel } from "./safety-panel";

interface Props {
  title: string;
  messages: WebMessage[];
  /** Changes when another conversation opens: the composer then takes the focus. */
  openedAt: number;
  onSend: (text: string) => Promise<void>;
  /** The other account's id in a direct conversation (for its safety number); undefined in a group or a new chat. */
  peer: string | undefined;
  /** A group conversation's id and a counter bumped when it changed (for its info panel); undefined otherwise. */
  group?: { conversation: string; version: number } | undefined;
}

const statusLabel = {
  queued: "Queued: goes out when the server is back",
  sent: "Sent",
  delivered: "Delivered",
  received: "",
  failed: "Not sent: the server refused it",
} as const;

/** The open conversation. */
export function ConversationView({ title, messages, openedAt, onSend, peer, group }: Props): JSX.Element {
  const list = useRef<HTMLOListElement>(null);
  const composer = useRef<HTMLTextAreaElement>(null);
  const [error, setError] = useState<string>();

  useEffect(() => composer.current?.focus(), [openedAt]);
  useEffect(() => {
    if (list.current) list.current.scrollTop = list.current.scrollHeight;
  }, [messages.length, openedAt]);

  const submit = async (event?: Event): Promise<void> => {
    event?.preventDefault();
    const box = composer.current;
    const text = box?.value.trim() ?? "";
    if (!box || !text) return;
    setError(undefined);
    box.value = "";
    try {
      await onSend(text);
    } catch (failure) {
      // Give the text back, so nothing typed is lost.
      if (!box.value) box.value = text;
      setError(failure instanceof Error ? failure.message : String(failure));
    }
    box.focus();
  };
  const onKeyDown = (event: KeyboardEvent): void => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) void submit(event);
  };

  return (
    <section class="conversation-view" aria-labelledby="conversation-title">
      <div class="conversation-head">
        <h2 id="conversation-title">{title}</h2>
        {peer && <SafetyPanel user={peer} name={title} />}
        {group && <GroupPanel conversation={group.conversation} title={title} version={group.version} />}
      </div>
      <ol class="messages" ref={list} tabIndex={0} aria-label={`Messages with ${title}`}>
        {messages.length === 0 && <li class="empty">No messages yet. Say hello.</li>}
        {messages.map((m) => (
          <li key={m.id} class={`message ${m.outgoing ? "outgoing" : "incoming"}`} data-status={m.status}>
            <p class="meta">
              <span class="author">{m.outgoing ? "You" : m.authorName}</span>{" "}
              <time dateTime={toDate(m.at).toISOString()}>{shortTime(m.at)}</time>
            </p>
            <p class="text">{m.text}</p>
            {m.outgoing && <p class="status">{statusLabel[m.status]}</p>}
          </li>
        ))}
      </ol>
      <form class="composer" onSubmit={submit}>
        <label for="composer">Message to {title}</label>
        <div class="row">
          <textarea
            id="composer"
            ref={composer}
            rows={2}
            onKeyDown={onKeyDown}
            aria-describedby={error ? "composer-error" : "composer-hint"}
          />
          <button type="submit">Send</button>
        </div>
        <p id="composer-hint" class="hint">
          Enter sends, Shift+Enter starts a new line.
        </p>
        {error && (
          <p id="composer-error" role="alert" class="error">
            {error}
          </p>
        )}
      </form>
    </section>
  );
}
