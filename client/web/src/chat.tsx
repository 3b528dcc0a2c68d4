/**
 * The main screen once registered: the conversation list, the open
 * conversation, the connection indicator and the live region that announces
 * incoming messages. Live updates come from the daemon's event stream.
 */
import type { JSX } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import {
  acceptIdentity,
  ApiError,
  createGroup,
  getConversations,
  getMe,
  getMessages,
  markRead,
  send,
  uploadFile,
  type Progress,
} from "./api";
import type { WebConversation, WebMessage, WebMessageStatus, RegisteredMe, WebEvent } from "./api-types";
import { ConversationList } from "./conversation-list";
import { ConversationView } from "./conversation-view";
import { LinkAnotherDevice } from "./link-device";
import { connectEvents } from "./events";
import { missingCase, upsertMessage, withStatus } from "./messages";

/** The open conversation; `id` is unknown until the first message to a new username is sent. */
interface Open {
  id: string | undefined;
  title: string;
  /** What `POST /api/send` gets as `to`: the conversation id, or the username of a new chat. */
  to: string;
  /** Bumped on every open, so the composer takes the focus. */
  openedAt: number;
}

const report = (error: unknown): void => console.error("zimchat:", error);

interface Props {
  me: RegisteredMe;
  /** The daemon no longer knows this page's session (it was restarted): the page needs the new address. */
  onSessionLost: () => void;
}

/** The chat screen for the registered account `me`. */
export function Chat({ me, onSessionLost }: Props): JSX.Element {
  const [conversations, setConversations] = useState<WebConversation[]>([]);
  const [open, setOpen] = useState<Open>();
  const [messages, setMessages] = useState<WebMessage[]>([]);
  const [online, setOnline] = useState(me.online);
  const [linked, setLinked] = useState(true);
  const [announcement, setAnnouncement] = useState("");
  // Bumped when the open group changed (members, admins), so its info panel fetches it again.
  const [groupVersion, setGroupVersion] = useState(0);
  // The event handler is set up once; these refs give it the current state.
  const openRef = useRef<Open | undefined>(undefined);
  openRef.current = open;
  const messagesRef = useRef(messages);
  messagesRef.current = messages;
  const conversationsRef = useRef(conversations);
  conversationsRef.current = conversations;
  // A status event that overtakes the send answer: applied when the message arrives.
  const earlyStatus = useRef(new Map<string, WebMessageStatus>());

  const refreshConversations = useCallback(() => getConversations().then(setConversations, report), []);
  const loadMessages = useCallback((id: string) => {
    getMessages(id).then((list) => {
      if (openRef.current?.id === id) setMessages(list);
    }, report);
    markRead(id).then(refreshConversations, report);
  }, []);

  const addMessage = (message: WebMessage): void => {
    const early = earlyStatus.current.get(message.id);
    earlyStatus.current.delete(message.id);
    setMessages((list) => {
      const merged = upsertMessage(list, message);
      return early ? withStatus(merged, message.id, early) : merged;
    });
  };

  const onEvent = (event: WebEvent): void => {
    const current = openRef.current;
    switch (event.type) {
      case "message": {
        const { message } = event;
        if (current?.id === event.conversation) {
          addMessage(message);
          if (!message.outgoing) markRead(event.conversation).catch(report);
        }
        if (!message.outgoing) {
          const where = conversationsRef.current.find((c) => c.id === event.conversation);
          const group = where?.kind === "group" ? ` in ${where.title}` : "";
          const what = message.text || (message.attachment ? `a file, ${message.attachment.name}` : "");
          setAnnouncement(`New message from ${message.authorName}${group}: ${what}`);
        }
        void refreshConversations();
        return;
      }
      case "status": {
        if (current?.id !== event.conversation) return;
        const known = messagesRef.current.find((m) => m.id === event.id);
        if (!known) {
          earlyStatus.current.set(event.id, event.status);
          return;
        }
        setMessages((list) => withStatus(list, event.id, event.status));
        // A queued message that went out is stored under another id: fetch the list again, so its receipts apply.
        if (known.status === "queued" && event.status === "sent") loadMessages(event.conversation);
        return;
      }
      case "conversations":
        void refreshConversations();
        return;
      case "identityChanged": {
        const who = conversationsRef.current.find((c) => c.id === event.conversation)?.title ?? "A contact";
        setAnnouncement(
          event.blocked
            ? `${who}'s safety number has changed: sending to ${who} is blocked until you accept it.`
            : `${who}'s safety number has changed.`,
        );
        void refreshConversations();
        return;
      }
      case "bridges":
        void refreshConversations();
        return;
      case "connection":
        setOnline(event.online);
        return;
      case "group":
        if (current?.id === event.conversation) setGroupVersion((v) => v + 1);
        return;
      case "linked":
      case "linkFailed":
        // Only for a page that is linking this profile (the register screen).
        return;
      default:
        missingCase(event);
    }
  };
  const onEventRef = useRef(onEvent);
  onEventRef.current = onEvent;

  useEffect(() => {
    let first = true;
    void refreshConversations();
    return connectEvents({
      event: (event) => onEventRef.current(event),
      linked: (up) => {
        setLinked(up);
        if (!up) {
          // A daemon that restarted refuses the old cookie: say so instead of retrying forever.
          getMe().catch((error: unknown) => {
            if (error instanceof ApiError && error.isUnauthorized()) onSessionLost();
          });
          return;
        }
        if (first) {
          first = false;
          return;
        }
        // Back after a drop: catch up on what the stream missed.
        getMe().then((now) => now.registered && setOnline(now.online), report);
        void refreshConversations();
        const id = openRef.current?.id;
        if (id) loadMessages(id);
      },
    });
  }, []);

  // A new chat gets its conversation id once the list holds a direct conversation with that name.
  useEffect(() => {
    if (!open || open.id) return;
    const found = conversations.find((c) => c.kind === "direct" && c.title === open.to);
    if (found) {
      setOpen({ ...open, id: found.id, title: found.title, to: found.id });
      loadMessages(found.id);
    }
  }, [conversations, open]);

  // The tab title counts unread messages.
  useEffect(() => {
    const unread = conversations.reduce((sum, c) => sum + c.unread, 0);
    document.title = unread ? `(${unread}) ZimChat` : "ZimChat";
  }, [conversations]);

  const select = (conversation: WebConversation): void => {
    earlyStatus.current.clear();
    setOpen({ id: conversation.id, title: conversation.title, to: conversation.id, openedAt: Date.now() });
    setMessages([]);
    setConversations((list) => list.map((c) => (c.id === conversation.id ? { ...c, unread: 0 } : c)));
    loadMessages(conversation.id);
  };
  const newChat = (username: string): void => {
    const existing = conversations.find((c) => c.kind === "direct" && c.title === username);
    if (existing) return select(existing);
    earlyStatus.current.clear();
    setOpen({ id: undefined, title: username, to: username, openedAt: Date.now() });
    setMessages([]);
  };
  const newGroup = async (title: string, members: string[]): Promise<void> => {
    const group = await createGroup(title, members);
    await refreshConversations();
    setOpen({ id: group.conversation, title: group.title, to: group.conversation, openedAt: Date.now() });
    setMessages([]);
    loadMessages(group.conversation);
  };
  const sendText = async (text: string): Promise<void> => {
    if (!open) return;
    const result = await send({ to: open.to, text });
    opened(result.conversation);
    addMessage({
      id: result.id,
      author: me.uuid,
      authorName: me.username,
      outgoing: true,
      text,
      at: Date.now(),
      status: result.status,
    });
    void refreshConversations();
  };

  /** A new chat learns its conversation id from its first send. */
  const opened = (conversation: string): void => {
    if (!open || open.id) return;
    const now = { ...open, id: conversation, to: conversation };
    setOpen(now);
    openRef.current = now;
  };
  const sendFile = async (file: File, onProgress: Progress): Promise<void> => {
    if (!open) return;
    const result = await uploadFile(open.to, file, onProgress);
    opened(result.conversation);
    addMessage({
      id: result.id,
      author: me.uuid,
      authorName: me.username,
      outgoing: true,
      text: "",
      at: Date.now(),
      status: result.status,
      attachment: result.attachment,
    });
    void refreshConversations();
  };
  const acceptKeyChange = async (): Promise<void> => {
    if (!open?.id) return;
    await acceptIdentity(open.id);
    await refreshConversations();
  };
  const current = open?.id ? conversations.find((c) => c.id === open.id) : undefined;

  const connection = !linked
    ? { state: "daemon-lost", text: "Lost the local daemon: reconnecting…" }
    : online
      ? { state: "online", text: "Online" }
      : { state: "offline", text: "Offline: messages are queued and go out when the server is back" };

  return (
    <div class="chat">
      <header class="top">
        <h1>ZimChat</h1>
        <p class="account">
          {me.username} on {me.server}
        </p>
        <p class={`connection ${connection.state}`} role="status" data-state={connection.state}>
          {connection.text}
        </p>
      </header>
      <div class="columns">
        <ConversationList
          conversations={conversations}
          selected={open?.id}
          onSelect={select}
          onNewChat={newChat}
          onNewGroup={newGroup}
          footer={<LinkAnotherDevice me={me} />}
        />
        <main class="main">
          {open ? (
            <ConversationView
              title={open.title}
              messages={messages}
              openedAt={open.openedAt}
              onSend={sendText}
              onSendFile={sendFile}
              onAcceptKeyChange={acceptKeyChange}
              onChanged={() => void refreshConversations()}
              peer={open.id && !open.id.startsWith("group:") ? open.id : undefined}
              group={open.id?.startsWith("group:") ? { conversation: open.id, version: groupVersion } : undefined}
              conversation={current}
            />
          ) : (
            <p class="empty">Choose a conversation, or start a new chat with a username.</p>
          )}
        </main>
      </div>
      <div class="visually-hidden" aria-live="polite" id="announcements">
        {announcement}
      </div>
    </div>
  );
}
