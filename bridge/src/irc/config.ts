/** The IRC adapter's settings (the `irc` section of a bridge's config file). */
import { z } from "zod";

const nick = z
  .string()
  .min(1)
  .max(30)
  .regex(/^[A-Za-z[\]\\`_^{|}][A-Za-z0-9[\]\\`_^{|}-]*$/, "an IRC nickname");

export const ircConfigSchema = z
  .object({
    /** The IRC server. */
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(6667),
    tls: z.boolean().default(false),
    /** The relay connection's nickname (taken: `_`, then a number, is appended). */
    nick: nick.default("zimbridge"),
    /** SASL PLAIN for the relay connection, for networks and `+r` channels that need a registered account. */
    sasl: z.object({ account: z.string().min(1), password: z.string().min(1) }).optional(),
    /** The channels group admins may bridge to; absent: any channel. */
    channels: z.array(z.string().regex(/^[#&][^\s,\x07]{1,49}$/)).optional(),
    /**
     * Per-member puppet connections: each ZimChat author speaks as their own
     * nick (`name` + `suffix`), opened on their first message and closed
     * after `idleMinutes` without one; at most `max` at once (beyond that,
     * and for members whose puppet cannot join, the relay nick speaks for
     * them as `<name> text`). Off: the relay nick speaks for everyone.
     */
    puppets: z
      .object({
        enabled: z.boolean().default(false),
        suffix: z
          .string()
          .max(8)
          .regex(/^[A-Za-z0-9[\]\\`_^{|}-]*$/)
          .default("[zim]"),
        idleMinutes: z.number().positive().default(60),
        max: z.number().int().min(1).max(500).default(20),
      })
      .prefault({}),
    /** Lines one ZimChat message may become (after splitting on newlines and at `maxLineBytes`). */
    maxLines: z.number().int().min(1).max(100).default(5),
    /**
     * Bytes of text per IRC line (the rest of the 512-byte line holds the command, the target and the sender's
     * prefix).
     */
    maxLineBytes: z.number().int().min(100).max(400).default(350),
    /**
     * A message over `maxLines`: `truncate` sends the first lines and a notice; `refuse` sends none. Either way the
     * group is told.
     */
    longMessages: z.enum(["truncate", "refuse"]).default("truncate"),
    /**
     * Flood pacing per connection: up to `burst` lines at once, then one line
     * every `intervalMs` (IRC servers throttle, then disconnect, clients that
     * send faster; ngircd's default allows about one command a second).
     */
    pacing: z
      .object({
        burst: z.number().int().min(1).max(20).default(4),
        intervalMs: z.number().int().min(100).max(10_000).default(1_000),
      })
      .prefault({}),
    /** Reconnect backoff: doubling from `minMs` to `maxMs`, with jitter. */
    reconnect: z
      .object({
        minMs: z.number().int().min(100).default(1_000),
        maxMs: z.number().int().min(1_000).default(60_000),
      })
      .prefault({}),
  })
  .strict();

export type IrcConfig = z.infer<typeof ircConfigSchema>;
export type IrcConfigInput = z.input<typeof ircConfigSchema>;
