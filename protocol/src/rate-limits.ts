/**
 * The homeserver's named rate limits: what each one counts and what a
 * caller sees when it is used up. The numbers are the server's
 * configuration (`rateLimits`); `/openapi.json` and `/asyncapi.json` state
 * them per operation from the running server's values.
 */
export const rateLimitInfo = {
  register: { key: "client address", description: "Registrations per client address", exceeded: "refused" },
  usernameLookup: { key: "account", description: "Username lookups per requesting account", exceeded: "refused" },
  federationUsernameLookup: {
    key: "origin server",
    description: "Username lookups per requesting server (federation)",
    exceeded: "refused",
  },
  preKeyBundle: {
    key: "account and target account",
    description: "Pre-key bundle fetches per requesting account and target account",
    exceeded: "refused",
  },
  send: {
    key: "device",
    description: "Sends per sending device (single and multi-recipient, REST and socket)",
    exceeded: "refused",
  },
  federationAttachmentDownload: {
    key: "origin server",
    description: "Attachment downloads one origin server makes for its users (federation)",
    exceeded: "refused",
  },
  remoteAttachmentDownload: {
    key: "account",
    description: "Downloads of attachments stored on other servers, through this server, per account (federation)",
    exceeded: "refused",
  },
  federationSend: {
    key: "origin server",
    description: "Sends relayed by one origin server (federation), one point per send of a transaction",
    exceeded: "refused",
  },
  sealedSend: {
    key: "recipient account and client address",
    description:
      "Sends without credentials (sealed sender) per recipient account and client address; a multi-recipient send takes one point per recipient",
    exceeded: "refused",
  },
  linkCode: { key: "client address", description: "Linking codes created per client address", exceeded: "refused" },
  preKeyClaimsPerTarget: {
    key: "target device",
    description:
      "One-time pre-keys handed out per target device, whoever asks; beyond it bundles carry no one-time EC key and the last-resort Kyber key",
    exceeded: "degraded",
  },
  federationPreKeyBundle: {
    key: "origin server and target account",
    description: "Pre-key bundle fetches per requesting server and target account (federation)",
    exceeded: "refused",
  },
  federationPreKeyClaims: {
    key: "origin server",
    description:
      "One-time pre-keys one requesting server may claim for its users, all targets together (federation); beyond it bundles carry no one-time keys",
    exceeded: "degraded",
  },
  preKeyClaimsPerRequester: {
    key: "account",
    description:
      "One-time pre-keys one requesting account may claim, all targets together; beyond it bundles carry no one-time keys",
    exceeded: "degraded",
  },
  failedAuthPerAddress: {
    key: "client address",
    description:
      "Failed authentications per client address (only failures count); then 429 `too_many_failed_logins` for that address",
    exceeded: "refused",
  },
  failedAuthPerAddressAndDevice: {
    key: "client address and device user name",
    description:
      "Failed authentications per client address and device user name (only failures count); then 429 `too_many_failed_logins`",
    exceeded: "refused",
  },
} as const satisfies Record<string, { key: string; description: string; exceeded: "refused" | "degraded" }>;

/** The name of one of the homeserver's rate limits. */
export type RateLimitName = keyof typeof rateLimitInfo;

/** One rate limit's setting: `points` per `durationSeconds` (a token bucket per key). */
export interface RateLimitSetting {
  points: number;
  durationSeconds: number;
}

/** Every rate limit's setting, or `false` when the server runs without rate limits. */
export type RateLimitSettings = Record<RateLimitName, RateLimitSetting> | false;

/** The limits every credential check is subject to (HTTP Basic and the Socket.IO handshake). */
export const authRateLimits: readonly RateLimitName[] = ["failedAuthPerAddress", "failedAuthPerAddressAndDevice"];

/**
 * The `x-rate-limit` entries of one operation: each named limit with its
 * count, window and key, from the server's settings. Empty when the server
 * runs without rate limits.
 */
export function rateLimitEntries(
  names: readonly RateLimitName[],
  settings: RateLimitSettings,
): Record<string, unknown>[] {
  if (!settings) return [];
  return names.map((name) => ({
    name,
    count: settings[name].points,
    windowSeconds: settings[name].durationSeconds,
    key: rateLimitInfo[name].key,
    exceeded: rateLimitInfo[name].exceeded,
    description: rateLimitInfo[name].description,
  }));
}
