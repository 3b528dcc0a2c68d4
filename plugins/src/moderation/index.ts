/**
 * The moderation plugin: admission and send quotas on metadata only.
 *
 * It decides from what the homeserver already knows (usernames at
 * registration, which account sends how many messages) and never from
 * content, which the server cannot read. It can:
 *
 * - limit who may register: an allowlist of usernames (exact names or
 *   `prefix*` patterns) and a list of reserved names nobody may take;
 * - give each account a send quota per hour (authenticated sends; sealed
 *   sends carry no sender and are limited by the server's per-recipient
 *   `sealedSend` rate limit instead);
 * - suspend accounts: their authenticated sends are refused.
 *
 * Quota counters live in memory, so a restart forgets the current hour.
 *
 * @example zimchat.config.json
 * { "plugins": [{ "use": "@zimchat/plugins/moderation",
 *                 "config": { "sendsPerHour": 500, "reservedUsernames": ["admin", "support"] } }] }
 */
import { definePlugin, type Refusal } from "@zimchat/plugin-sdk/server";
import { z } from "zod";

const usernamePattern = z
  .string()
  .regex(/^[a-z0-9_.]{1,32}\*?$/, "a username ([a-z0-9_.]), optionally ending in * to match a prefix")
  .max(64);

/** The moderation plugin's config. Every rule is off unless set. */
export const moderationConfigSchema = z
  .object({
    /** Only these usernames (or `prefix*` patterns) may register. Absent: anyone the registration mode admits. */
    allowUsernames: z.array(usernamePattern).max(10_000).optional(),
    /** Names (or `prefix*` patterns) nobody may register, e.g. "admin", "support", "security*". */
    reservedUsernames: z.array(usernamePattern).max(10_000).default([]),
    /** Authenticated sends per account per hour, counting each recipient account of a send. Absent: no quota. */
    sendsPerHour: z.number().int().positive().max(10_000_000).optional(),
    /** Account ids whose authenticated sends are refused. */
    suspendedAccounts: z.array(z.uuid()).max(100_000).default([]),
  })
  .strict();

/** The moderation plugin's config, after defaults. */
export type ModerationConfig = z.output<typeof moderationConfigSchema>;

function matcher(patterns: readonly string[]): (username: string) => boolean {
  const exact = new Set(patterns.filter((p) => !p.endsWith("*")));
  const prefixes = patterns.filter((p) => p.endsWith("*")).map((p) => p.slice(0, -1));
  return (username) => exact.has(username) || prefixes.some((p) => username.startsWith(p));
}

const hourMs = 3_600_000;

/** The plugin. Enable it from the server's config file under `plugins`. */
export const moderationPlugin = definePlugin({
  name: "moderation",
  configSchema: moderationConfigSchema,
  setup(ctx, config) {
    const allowed = config.allowUsernames ? matcher(config.allowUsernames) : () => true;
    const reserved = matcher(config.reservedUsernames);
    const suspended = new Set(config.suspendedAccounts);
    /** Sends per account in the current hour window. */
    const windows = new Map<string, { start: number; count: number }>();

    ctx.route({
      method: "GET",
      path: "/v1/limits",
      auth: "device",
      handler: ({ device }) => {
        const window = device && windows.get(device.accountId);
        const used = window && Date.now() - window.start < hourMs ? window.count : 0;
        return {
          body: {
            sendsPerHour: config.sendsPerHour ?? null,
            sentThisHour: used,
            suspended: !!device && suspended.has(device.accountId),
          },
        };
      },
    });

    return {
      beforeAccountRegistered({ username }): Refusal | void {
        if (reserved(username))
          return { code: "username_reserved", reason: `The username "${username}" is reserved on this server.` };
        if (!allowed(username))
          return {
            code: "username_not_allowed",
            reason: `This server only admits listed usernames; ask an admin to add "${username}".`,
          };
      },
      beforeEnvelopeAccepted({ sender }): Refusal | void {
        if (!sender) return; // Sealed: no sender to count or suspend (the server rate-limits per recipient).
        if (suspended.has(sender.accountId))
          return { code: "account_suspended", reason: "This account is suspended from sending on this server." };
        if (config.sendsPerHour === undefined) return;
        const now = Date.now();
        let window = windows.get(sender.accountId);
        if (!window || now - window.start >= hourMs) windows.set(sender.accountId, (window = { start: now, count: 0 }));
        if (window.count >= config.sendsPerHour) {
          return {
            code: "send_quota_exceeded",
            reason: `This account may send ${config.sendsPerHour} messages per hour.`,
            retryAfterSeconds: Math.ceil((window.start + hourMs - now) / 1000),
          };
        }
        window.count++;
      },
      start() {
        ctx.logger.info(
          {
            allowlist: config.allowUsernames?.length ?? null,
            reserved: config.reservedUsernames.length,
            sendsPerHour: config.sendsPerHour ?? null,
            suspended: suspended.size,
          },
          "moderation rules loaded",
        );
      },
    };
  },
});

export default moderationPlugin;
