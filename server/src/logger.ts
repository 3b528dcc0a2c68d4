import { pino, type Logger } from "pino";

/**
 * The homeserver's structured logger. Request logs carry the route pattern,
 * status and duration only: no URLs with ids, no IP addresses, no headers,
 * no bodies. The redact list is a second line of defence for fields that
 * must never be written even if a log call passes them by mistake.
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
    destination,
  );
}

export type { Logger };
