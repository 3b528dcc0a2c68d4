/**
 * The right column: one conversation's messages and the composer (Enter sends, Shift+Enter starts a new line), its
 * bridge disclosures and key-change warning above them, files to send and download with their progress.
 */
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { downloadFile } from "./api";
import type { WebConversation, WebMessage } from "./api-types";
import { fileSize, shortTime, toDate } from "./messages";
import { GroupPanel } from "./group-panel";
import { SafetyPanel } from "./safety-panel";

interface Props {
  title: string;
  messages: WebMessage[];
  /** Changes when another conversation opens: the composer then takes the focus. */
  openedAt: number;
  onSend: (text: string) => Promise<void>;
  /** Sends a file; `onProgress` gets the bytes uploaded so far. */
  onSendFile: (file: File, onProgress: (loaded: number, total: number) => void) => Promise<void>;
  /** Accepts the changed safety number of the other person (a direct conversation with `keyChanged`). */
  onAcceptKeyChange: () => Promise<void>;
  /** The conversation list changed here (a contact verified): fetch it again. */
  onChanged: () => void;
  /** The other account's id in a direct conversation (for its safety number); undefined in a group or a new chat. */
  peer: string | undefined;
  /** A group conversation's id and a counter bumped when it changed (for its info panel); undefined otherwise. */
  group?: { conversation: string; version: number } | undefined;
  /** The conversation as the list has it (undefined for a new chat): its key-change flag and bridges. */
  conversation: WebConversation | undefined;
}

/** A file on its way: its name and how far it got. */
interface Transfer {
  name: string;
  percent: number;
  done: boolean;
}

const statusLabel = {
  queued: "Queued: goes out when the server is back",
  sent: "Sent",
  delivered: "Delivered",
  received: "",
  failed: "Not sent: the server refused it",
} as const;

const percentOf = (loaded: number, total: number): number =>
  total > 0 ? Math.min(100, Math.floor((loaded / total) * 100)) : 100;

const message = (failure: unknown): string => (failure instanceof Error ? failure.message : String(failure));

/** Hands a downloaded file to the browser as a download named `name`. */
function save(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The open conversation. */
export function ConversationView({
  title,
  messages,
  openedAt,
  onSend,
  onSendFile,
  onAcceptKeyChange,
  onChanged,
  peer,
  group,
  conversation,
}: Props): JSX.Element {
  const list = useRef<HTMLOListElement>(null);
  const composer = useRef<HTMLTextAreaElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const [error, setError] = useState<string>();
  const [upload, setUpload] = useState<Transfer>();
  const [downloads, setDownloads] = useState<Record<string, Transfer>>({});
  const [safetyRequest, setSafetyRequest] = useState(0);
  const blocked = conversation?.keyChanged === true;
  const bridges = conversation?.bridges ?? [];

  useEffect(() => composer.current?.focus(), [openedAt]);
  useEffect(() => {
    setUpload(undefined);
    setDownloads({});
    setError(undefined);
  }, [openedAt]);
  useEffect(() => {
    if (list.current) list.current.scrollTop = list.current.scrollHeight;
  }, [messages.length, openedAt]);

  const submit = async (event?: Event): Promise<void> => {
    event?.preventDefault();
    const box = composer.current;
    const text = box?.value.trim() ?? "";
    if (!box || !text || blocked) return;
    setError(undefined);
    box.value = "";
    try {
      await onSend(text);
    } catch (failure) {
      // Give the text back, so nothing typed is lost.
      if (!box.value) box.value = text;
      setError(message(failure));
    }
    box.focus();
  };
  const onKeyDown = (event: KeyboardEvent): void => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) void submit(event);
  };

  const sendFile = async (file: File): Promise<void> => {
    if (blocked) return;
    setError(undefined);
    setUpload({ name: file.name, percent: 0, done: false });
    try {
      await onSendFile(file, (loaded, total) =>
        setUpload({ name: file.name, percent: percentOf(loaded, total), done: false }),
      );
      setUpload({ name: file.name, percent: 100, done: true });
    } catch (failure) {
      setUpload(undefined);
      setError(`${file.name} was not sent: ${message(failure)}`);
    }
    if (fileInput.current) fileInput.current.value = "";
  };
  const onFileChosen = (): void => {
    const file = fileInput.current?.files?.[0];
    if (file) void sendFile(file);
  };
  const onDrop = (event: DragEvent): void => {
    const file = event.dataTransfer?.files[0];
    if (!file) return;
    event.preventDefault();
    void sendFile(file);
  };

  const download = async (m: WebMessage): Promise<void> => {
    const id = conversation?.id;
    const attachment = m.attachment;
    if (!id || !attachment) return;
    const progress = (percent: number, done = false): void =>
      setDownloads((all) => ({ ...all, [m.id]: { name: attachment.name, percent, done } }));
    progress(0);
    try {
      const blob = await downloadFile(id, m.id, attachment.size, (loaded, total) => progress(percentOf(loaded, total)));
      progress(100, true);
      save(blob, attachment.name);
    } catch (failure) {
      setDownloads(({ [m.id]: _dropped, ...rest }) => rest);
      setError(`${attachment.name} could not be downloaded: ${message(failure)}`);
    }
  };

  const accept = async (): Promise<void> => {
    setError(undefined);
    try {
      await onAcceptKeyChange();
      composer.current?.focus();
    } catch (failure) {
      setError(message(failure));
    }
  };

  return (
    <section
      class="conversation-view"
      aria-labelledby="conversation-title"
      onDragOver={(event) => event.preventDefault()}
      onDrop={onDrop}
    >
      <div class="conversation-head">
        <h2 id="conversation-title">{title}</h2>
        {peer && (
          <SafetyPanel
            user={peer}
            name={title}
            keyChanged={blocked}
            openRequest={safetyRequest}
            onVerified={onChanged}
          />
        )}
        {group && <GroupPanel conversation={group.conversation} title={title} version={group.version} />}
      </div>
      {bridges.length > 0 && (
        <div class="bridge-banner" role="note" aria-label="This group is bridged">
          {bridges.map((text) => (
            <p key={text}>{text}</p>
          ))}
        </div>
      )}
      {blocked && (
        <div class="key-change" role="alert">
          <p>
            <strong>{title}'s safety number has changed.</strong> This happens when {title} reinstalls ZimChat or moves
            to a new phone, but it can also mean someone is trying to read along. You had verified {title}, so sending
            is blocked until you accept the new safety number or verify it again.
          </p>
          <div class="row">
            <button type="button" onClick={() => void accept()}>
              Accept the new safety number
            </button>
            <button type="button" class="link" onClick={() => setSafetyRequest((n) => n + 1)}>
              Compare safety numbers
            </button>
          </div>
        </div>
      )}
      <ol class="messages" ref={list} tabIndex={0} aria-label={`Messages with ${title}`}>
        {messages.length === 0 && <li class="empty">No messages yet. Say hello.</li>}
        {messages.map((m) => {
          const transfer = downloads[m.id];
          return (
            <li key={m.id} class={`message ${m.outgoing ? "outgoing" : "incoming"}`} data-status={m.status}>
              <p class="meta">
                <span class="author">{m.outgoing ? "You" : m.authorName}</span>{" "}
                <time dateTime={toDate(m.at).toISOString()}>{shortTime(m.at)}</time>
              </p>
              {m.attachment && (
                <div class="file">
                  <button
                    type="button"
                    class="secondary"
                    disabled={transfer !== undefined && !transfer.done}
                    onClick={() => void download(m)}
                  >
                    Download {m.attachment.name}
                  </button>{" "}
                  <span class="hint">{fileSize(m.attachment.size)}</span>
                  {transfer && (
                    <p class="transfer">
                      <progress
                        class="download-progress"
                        max={100}
                        value={transfer.percent}
                        data-percent={transfer.percent}
                        aria-label={`Downloading ${transfer.name}`}
                      />{" "}
                      <span role="status">{transfer.done ? "Downloaded" : `${transfer.percent}%`}</span>
                    </p>
                  )}
                </div>
              )}
              {m.text && <p class="text">{m.text}</p>}
              {m.outgoing && <p class="status">{statusLabel[m.status]}</p>}
            </li>
          );
        })}
      </ol>
      <form class="composer" onSubmit={submit}>
        <label for="composer">Message to {title}</label>
        <div class="row">
          <textarea
            id="composer"
            ref={composer}
            rows={2}
            onKeyDown={onKeyDown}
            disabled={blocked}
            aria-describedby={blocked ? "composer-blocked" : error ? "composer-error" : "composer-hint"}
          />
          <button type="submit" disabled={blocked}>
            Send
          </button>
        </div>
        {blocked ? (
          <p id="composer-blocked" class="hint warn">
            Sending to {title} is blocked: their safety number changed. Accept the new safety number above, or verify
            it, to send again.
          </p>
        ) : (
          <p id="composer-hint" class="hint">
            Enter sends, Shift+Enter starts a new line. Drop a file here to send it.
          </p>
        )}
        <div class="send-file">
          <label for="file-input">Send a file</label>
          <input id="file-input" type="file" ref={fileInput} disabled={blocked} onChange={onFileChosen} />
          {upload && (
            <p class="transfer">
              <progress
                class="upload-progress"
                max={100}
                value={upload.percent}
                data-percent={upload.percent}
                aria-label={`Sending ${upload.name}`}
              />{" "}
              <span role="status">
                {upload.done ? `Sent ${upload.name}` : `Sending ${upload.name}: ${upload.percent}%`}
              </span>
            </p>
          )}
        </div>
        {error && (
          <p id="composer-error" role="alert" class="error">
            {error}
          </p>
        )}
      </form>
    </section>
  );
}
