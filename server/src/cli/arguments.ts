import { InvalidArgumentError } from "commander";

/** A whole number argument. */
export function int(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("must be a whole number");
  return Number(value);
}

/** A duration argument (`30m`, `12h`, `7d`) in milliseconds. */
export function duration(value: string): number {
  const match = /^(\d+)(m|h|d)$/.exec(value);
  if (!match) throw new InvalidArgumentError("must look like 30m, 12h or 7d");
  return Number(match[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as "m" | "h" | "d"];
}

/** A whole number argument of at least 1 (`--uses 0` is refused while the arguments are read). */
export function positiveInt(value: string): number {
  const n = int(value);
  if (n < 1) throw new InvalidArgumentError("must be at least 1");
  return n;
}
