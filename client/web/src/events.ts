/**
 * The daemon's event stream (`/api/events`): one WebSocket, opened again with
 * exponential backoff (0.5 s doubling to 10 s) whenever it drops.
 */
import type { WebEvent } from "./api-types";

/** What the page hears from the stream. */
export interface EventHandlers {
  event(event: WebEvent): void;
  /** The socket to the daemon opened (true) or dropped (false). */
  linked(up: boolean): void;
}

/** Opens the stream; the returned function closes it for good. */
export function connectEvents(handlers: EventHandlers): () => void {
  let socket: WebSocket | undefined;
  let delay = 500;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const open = (): void => {
    const url = new URL("/api/events", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.onopen = () => {
      delay = 500;
      handlers.linked(true);
    };
    socket.onmessage = (message) => {
      if (typeof message.data !== "string") return;
      try {
        handlers.event(JSON.parse(message.data) as WebEvent);
      } catch (error) {
        console.error("zimchat: unreadable event from the daemon", error);
      }
    };
    socket.onclose = () => {
      socket = undefined;
      if (closed) return;
      handlers.linked(false);
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 10_000);
    };
  };
  open();
  return () => {
    closed = true;
    clearTimeout(timer);
    socket?.close();
  };
}
