import { homedir } from "node:os";
import { isAbsolute, join, resolve, sep } from "node:path";
import { InvalidArgumentError } from "commander";

/** The profile name used when neither --profile nor ZIMCHAT_PROFILE names one. */
export const defaultProfileName = "default";

/**
 * Where profiles given by name live: `$XDG_DATA_HOME/zimchat/profiles` (`~/.local/share/zimchat/profiles` when
 * XDG_DATA_HOME is unset or relative, as the XDG spec says).
 */
export function profilesHome(env: { XDG_DATA_HOME?: string | undefined }, home = homedir()): string {
  const dataHome =
    env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : join(home, ".local", "share");
  return join(dataHome, "zimchat", "profiles");
}

/**
 * The directory a --profile (or ZIMCHAT_PROFILE) value names: a value with
 * a `/` (or `.`, `..`) is a path, anything else a profile name under
 * {@link profilesHome}, so profiles (keys, contacts) never land in whatever
 * directory the command runs in.
 * @throws InvalidArgumentError for a name that is not one (commander prints it with the option)
 */
export function profileDir(value: string, env: { XDG_DATA_HOME?: string | undefined }): string {
  if (value.includes("/") || value.includes(sep) || value === "." || value === "..") return resolve(value);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value)) {
    throw new InvalidArgumentError(
      `"${value}" is neither a profile name (letters, digits, . _ -, up to 64) nor a path (a path has a /, like ./${value})`,
    );
  }
  return join(profilesHome(env), value);
}

/** Where zimchat-chat kept the default profile before profiles moved to the user's data directory. */
export const legacyProfileDir = ".zimchat-chat";
