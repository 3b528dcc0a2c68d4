/**
 * The XMPP adapter's settings: an XEP-0114 component on the XMPP server, the
 * MUC service whose rooms it bridges, and the length policy.
 */
import { z } from "zod";

/** A domain name as XMPP uses it (lower case letters, digits, dots, hyphens; `localhost` allowed). */
const domainSchema = z
  .string()
  .trim()
  .toLowerCase()
  .regex(
    /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/,
    "must be a domain name like example.test",
  );

/** A room's bare JID, `room@conference.example.test`. */
const roomJidSchema = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[^\s"&'/:<>@]+@[a-z0-9.-]+$/, "must be a room JID like room@conference.example.test");

/**
 * The XMPP adapter's settings, validated. Only the CLI reads the environment:
 * `secret` is handed over as a string (the CLI may take it from an
 * environment variable it names).
 * @example
 * const config = xmppConfigSchema.parse({
 *   service: "xmpp://127.0.0.1:5347",
 *   domain: "bridge.example.test",
 *   secret: process.env.ZIMCHAT_XMPP_SECRET,
 *   mucDomain: "conference.example.test",
 * });
 */
export const xmppConfigSchema = z
  .object({
    /** Where the server's component port (XEP-0114) listens, `xmpp://host:port`. */
    service: z
      .string()
      .trim()
      .regex(/^xmpp:\/\/[^\s/:]+(:\d{1,5})?$/, "must be xmpp://host:port (the server's XEP-0114 component port)"),
    /** The component's own domain; puppets are `<name>@<domain>`. */
    domain: domainSchema,
    /** The component password shared with the server. */
    secret: z.string().min(1, "the component secret must not be empty"),
    /** The MUC service; targets are rooms on it unless `allowedRooms` lists them. */
    mucDomain: domainSchema,
    /**
     * When set, only these rooms (bare JIDs, or local parts on `mucDomain`) may be targets.
     * @default undefined (any room on mucDomain)
     */
    allowedRooms: z.array(z.string().trim().min(1)).optional(),
    /** The nick of the bridge's own occupant, which receives the room's messages. @default "zimchat" */
    relayNick: z.string().trim().min(1).max(64).default("zimchat"),
    /** Puppet occupants per room; later authors speak through the relay occupant as `<name> text`. @default 200 */
    maxPuppetsPerRoom: z.number().int().min(0).default(200),
    /** Reconnect backoff: exponential with jitter between these bounds. */
    reconnect: z
      .object({
        /** @default 1000 */
        minMs: z.number().int().positive().default(1000),
        /** @default 60000 */
        maxMs: z.number().int().positive().default(60_000),
      })
      .refine((r) => r.minMs <= r.maxMs, "reconnect.minMs must not exceed reconnect.maxMs")
      .default({ minMs: 1000, maxMs: 60_000 }),
    /** The longest text (in characters) said as one message. @default 10000 */
    maxMessageChars: z.number().int().min(100).default(10_000),
    /** What happens to a longer text: cut with a notice, or refused with a reason. @default "truncate" */
    longMessages: z.enum(["truncate", "refuse"]).default("truncate"),
  })
  .strict()
  .transform((config, ctx) => {
    if (config.allowedRooms === undefined) return { ...config, allowedRooms: undefined };
    const rooms: string[] = [];
    for (const room of config.allowedRooms) {
      const full = room.includes("@") ? room : `${room}@${config.mucDomain}`;
      const parsed = roomJidSchema.safeParse(full);
      if (!parsed.success) {
        ctx.addIssue({ code: "custom", path: ["allowedRooms"], message: `"${room}" is not a room JID` });
        return z.NEVER;
      }
      rooms.push(parsed.data);
    }
    return { ...config, allowedRooms: rooms };
  });

/** The XMPP adapter's settings after validation and defaults. */
export type XmppConfig = z.output<typeof xmppConfigSchema>;

/** The settings as written in a config file (defaults not yet applied). */
export type XmppConfigInput = z.input<typeof xmppConfigSchema>;
