/**
 * Everything the terminal chat reports, as a tagged union: `--json` prints
 * each as one JSON object per line, otherwise {@link renderEvent} turns it
 * into text for people.
 */

/** What the CLI reports. `user` fields are usernames where known, else account ids. */
export type CliEvent =
  | { type: "registered"; username: string; uuid: string; deviceId: number; server: string; profile: string }
  | { type: "whoami"; username: string; uuid: string; deviceId: number; server: string; profile: string }
  /** A message that arrived (from the stored queue or live). */
  | { type: "message"; from: string; fromUuid: string; fromDevice: number; text: string; timestamp: number; envelopeId: string }
  /** A message from the stored conversation (`chat` shows the history first). */
  | { type: "history"; direction: "in" | "out"; user: string; text: string; timestamp: number }
  | { type: "sent"; to: string; toUuid: string; text: string; timestamp: number; devices: number }
  | { type: "receipt"; from: string; fromUuid: string; timestamps: number[] }
  | { type: "identityChanged"; user: string; uuid: string; blocked: boolean }
  | { type: "decryptionFailed"; from: string | null; fromUuid: string | null; reason: string }
  /** The stored queue has been delivered; `received` counts the text messages in it. */
  | { type: "queueEmpty"; received: number }
  | { type: "safetyNumber"; user: string; digits: string; grouped: string; scannable: string; verified: boolean; qr?: string }
  | { type: "verified"; user: string }
  | { type: "accepted"; user: string; wasBlocked: boolean }
  /** `chat` is connected and reads lines. */
  | { type: "chatReady"; user: string }
  | { type: "warning"; message: string }
  | { type: "error"; code: string; message: string };

