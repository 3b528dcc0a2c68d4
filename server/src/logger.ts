import { pino, type Logger } from "pino";
import { SafeDestination } from "./faults/log-destination.js";

/**
 * The homeserver's structured logger. Request logs carry the route pattern,
 * status and duration only: no URLs with ids, no IP addresses, no headers,
 * no bodies. The redact list is a second line of defence for fields that
 * must never be written even if a log call passes them by mistake.
 * Without a `destination`, lines go to stdout through a {@link SafeDestination}:
 * a full disk or a closed pipe drops (and counts) lines, never stops the server.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "zimchat" },
      redact: {
        paths: [
          "password",
          "*.password",
          "authorization",
          "*.authorization",
          "headers",
          "*.headers",
          "content",
          "*.content",
          "identityKey",
          "*.identityKey",
          "token",
          "*.token",
          "inviteToken",
          "*.inviteToken",
          "ip",
          "*.ip",
        ],
        censor: "[redacted]",
      },
    },
    destination ?? new SafeDestination(1),
  );
}

/** Log lines the logger's destination dropped so far (0 for a destination other than the default). */
export function droppedLogLines(logger: Logger): number {
  const stream: unknown = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym];
  return stream instanceof SafeDestination ? stream.dropped : 0;
}

export type { Logger };
