/**
 * A bridge's config file (YAML or JSON): the bot's ZimChat side, and the
 * settings of the one network it bridges. Relative paths are resolved
 * against the file's directory. Secrets may come from the environment
 * instead of the file (see {@link secretEnv}).
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { filesConfigSchema, type FilesConfig } from "./files.js";
import { ircConfigSchema, type IrcConfig } from "./irc/config.js";
import type { NetworkName } from "./network.js";
import { xmppConfigSchema, type XmppConfig } from "./xmpp/config.js";

/** Environment variables that override the secrets of a config file (so the file can be shared or committed). */
export const secretEnv = {
  invite: "ZIMCHAT_INVITE",
  ircSaslPassword: "ZIMCHAT_BRIDGE_IRC_SASL_PASSWORD",
  xmppSecret: "ZIMCHAT_BRIDGE_XMPP_SECRET",
} as const;

/** The config file's largest accepted size: it is read whole. */
const maxConfigBytes = 256 * 1024;

const zimchatSchema = z
  .object({
    /** The bot's directory: its protocol store, `bot.json`, and the bridge's `bridge.db`. */
    dir: z.string().min(1),
    /** The homeserver's URL (first run; later runs use the registered one). */
    server: z.string().url().optional(),
    /** The bot's username (first run). */
    username: z.string().min(1).optional(),
    /** An invite token (first run, invite-only homeservers); better given as ZIMCHAT_INVITE. */
    inviteToken: z.string().min(1).optional(),
    /** The homeserver's trust-root fingerprint as its admin published it, checked when registering. */
    trustRootFingerprint: z.string().min(1).optional(),
    /** Allow a plain http:// homeserver that is not on this machine (first run). */
    allowInsecureHttp: z.boolean().default(false),
  })
  .strict();

export const bridgeConfigSchema = z
  .object({
    zimchat: zimchatSchema,
    irc: ircConfigSchema.optional(),
    xmpp: xmppConfigSchema.optional(),
    /** Publishing attachments for groups that ask for it (absent: attachments are announced, never sent). */
    files: filesConfigSchema.optional(),
  })
  .strict();

/** A loaded config for one network. */
export type LoadedConfig = { zimchat: z.infer<typeof zimchatSchema>; files?: FilesConfig } & (
  { network: "irc"; irc: IrcConfig } | { network: "xmpp"; xmpp: XmppConfig }
);

/** The config file is missing, unreadable or invalid; the message says where. */
export class BridgeConfigFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BridgeConfigFileError";
  }
}

/**
 * Reads and checks a config file for `network`, applying secrets from `env`.
 * @throws BridgeConfigFileError
 */
export function loadBridgeConfig(
  path: string,
  network: NetworkName,
  env: NodeJS.ProcessEnv = process.env,
): LoadedConfig {
  let raw: string;
  try {
    const bytes = readFileSync(path);
    if (bytes.length > maxConfigBytes)
      throw new BridgeConfigFileError(`${path}: larger than ${maxConfigBytes} bytes; is it the right file?`);
    raw = bytes.toString("utf8");
  } catch (error) {
    if (error instanceof BridgeConfigFileError) throw error;
    throw new BridgeConfigFileError(`${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? error})`);
  }
  let data: unknown;
  try {
    data = /\.json$/i.test(path) ? JSON.parse(raw) : parseYaml(raw);
  } catch (error) {
    throw new BridgeConfigFileError(`${path}: not valid ${/\.json$/i.test(path) ? "JSON" : "YAML"}: ${String(error)}`);
  }
  withSecrets(data, env);
  const parsed = bridgeConfigSchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  ${i.path.join(".") || "(top)"}: ${i.message}`).join("\n");
    throw new BridgeConfigFileError(`${path}: invalid config:\n${problems}`);
  }
  const config = parsed.data;
  const base = dirname(resolve(path));
  const zimchat = { ...config.zimchat, dir: resolve(base, config.zimchat.dir) };
  const files = config.files ? { files: { ...config.files, dir: resolve(base, config.files.dir) } } : {};
  if (network === "irc") {
    if (!config.irc) throw new BridgeConfigFileError(`${path}: no irc section, which "irc" needs`);
    return { network, zimchat, irc: config.irc, ...files };
  }
  if (!config.xmpp) throw new BridgeConfigFileError(`${path}: no xmpp section, which "xmpp" needs`);
  return { network, zimchat, xmpp: config.xmpp, ...files };
}

/** Puts the secrets given in the environment into the parsed file, before it is checked (they replace the file's). */
function withSecrets(data: unknown, env: NodeJS.ProcessEnv): void {
  const section = (key: string): Record<string, unknown> | undefined => {
    const value = (data as Record<string, unknown> | null)?.[key];
    return value !== null && typeof value === "object" ? (value as Record<string, unknown>) : undefined;
  };
  const invite = env[secretEnv.invite];
  const zimchat = section("zimchat");
  if (invite && zimchat) zimchat.inviteToken = invite;
  const password = env[secretEnv.ircSaslPassword];
  const sasl = section("irc")?.sasl;
  if (password && sasl !== null && typeof sasl === "object") (sasl as Record<string, unknown>).password = password;
  const secret = env[secretEnv.xmppSecret];
  const xmpp = section("xmpp");
  if (secret && xmpp) xmpp.secret = secret;
}
