import { InvalidArgumentError, Option, type Command } from "commander";
import { defaultProfileDir } from "./profile.js";

/** The options every subcommand takes. */
export interface CommonOptions {
  /** The profile directory. @default "./.zimchat-chat" (or ZIMCHAT_PROFILE) */
  profile: string;
  /** One JSON object per line instead of text. @default false */
  json: boolean;
}

/** Adds --profile and --json to a subcommand. */
export function withCommonOptions(command: Command): Command {
  return command
    .addOption(new Option("--profile <dir>", "the profile directory holding this device (device.db)").env("ZIMCHAT_PROFILE").default(defaultProfileDir))
    .addOption(new Option("--json", "print one JSON object per line, for scripts").default(false));
}

/** Parses a number of seconds (decimals allowed). */
export function seconds(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(n)) throw new InvalidArgumentError("must be a number of seconds");
  return n;
}

/** Parses a positive whole number. */
export function count(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError("must be a whole number of at least 1");
  return Number(value);
}

/** Parses a device id (1 to 127). */
export function deviceId(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 127) throw new InvalidArgumentError("must be a device id (1 to 127)");
  return Number(value);
}
