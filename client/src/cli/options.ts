import { InvalidArgumentError, Option, type Command } from "commander";
import { defaultProfileName, profileDir, profilesHome } from "./profile-path.js";

/** The options every subcommand takes. */
export interface CommonOptions {
  /**
   * The profile directory (resolved from a name or path). @default `$XDG_DATA_HOME/zimchat/profiles/default` (or
   * ZIMCHAT_PROFILE)
   */
  profile: string;
  /** One JSON object per line instead of text. @default false */
  json: boolean;
}

/** Adds --profile and --json to a subcommand; `env` gives XDG_DATA_HOME (where named profiles live). */
export function withCommonOptions(command: Command, env: { XDG_DATA_HOME?: string | undefined } = {}): Command {
  const home = profilesHome(env);
  return command
    .addOption(
      new Option(
        "--profile <dir>",
        `the profile directory holding this device (device.db) as a path (any value with a /, like ./alice), or a profile name, kept in ${home}/<name>`,
      )
        .env("ZIMCHAT_PROFILE")
        .argParser((value: string) => profileDir(value, env))
        .default(profileDir(defaultProfileName, env), defaultProfileName),
    )
    .addOption(new Option("--json", "print one JSON object per line, for scripts").default(false));
}

/** Parses a number of seconds (decimals allowed). */
export function seconds(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(n))
    throw new InvalidArgumentError("must be a number of seconds");
  return n;
}

/** Parses a positive whole number. */
export function count(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError("must be a whole number of at least 1");
  return Number(value);
}

/** Parses a device id (1 to 127). */
export function deviceId(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 127)
    throw new InvalidArgumentError("must be a device id (1 to 127)");
  return Number(value);
}

/** Accepts only a loopback listen address for `web` (127.0.0.1 or localhost), as 127.0.0.1. */
export function listenHost(value: string): string {
  if (value === "127.0.0.1" || value === "localhost") return "127.0.0.1";
  throw new InvalidArgumentError(
    "refused: the web client listens on 127.0.0.1 only, as it holds your private keys (any other address would let other machines or containers reach it); leave --host out",
  );
}

/** Parses a TCP port (0 to 65535; 0 picks a free one). */
export function port(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535)
    throw new InvalidArgumentError("must be a port number (0 to 65535)");
  return Number(value);
}
