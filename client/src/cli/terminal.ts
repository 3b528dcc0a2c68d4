/** What the terminal the CLI writes to can show. */

/** The environment variables that decide colour (see https://no-color.org and https://force-color.org). */
export interface ColourEnv {
  NO_COLOR?: string | undefined;
  FORCE_COLOR?: string | undefined;
  TERM?: string | undefined;
}

/**
 * Whether to write ANSI escape codes (colours, the coloured QR code) to
 * `stream`: `FORCE_COLOR` (any value but `0` or `false`) says yes, a
 * non-empty `NO_COLOR` says no, otherwise only a terminal that is not
 * `TERM=dumb` gets them; a pipe or a file never does.
 */
export function useColour(stream: { isTTY?: boolean }, env: ColourEnv): boolean {
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== "0" && env.FORCE_COLOR.toLowerCase() !== "false";
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  return stream.isTTY === true && env.TERM !== "dumb";
}
