import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

/** The lock file's name inside the bot's directory. */
export const lockFileName = "bot.lock";

/** Who holds a bot directory's lock (what `bot.lock` records). */
export interface StoreLockHolder {
  pid: number;
  hostname: string;
  /** When that process took the lock (ms since the epoch). */
  since: number;
}

/**
 * Another running process (or another `Bot` in this one) holds the bot's
 * directory. Two processes on one store would take turns displacing each
 * other's connection and race on the same sessions, so the second refuses to start.
 */
export class BotLockedError extends Error {
  override name = "BotLockedError";

  constructor(
    readonly dir: string,
    readonly lockPath: string,
    readonly holder: StoreLockHolder,
  ) {
    const where =
      holder.hostname === hostname() ? `process ${holder.pid}` : `process ${holder.pid} on ${holder.hostname}`;
    super(
      `${dir} is in use by another running bot (${where}, since ${new Date(holder.since).toISOString()}): ` +
        `one bot directory serves one process, or the two would displace each other's connection. ` +
        `Stop that process first; if it is not running any more, delete ${lockPath}.`,
    );
  }
}

/** Whether a process with this id exists on this machine. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Directories whose lock a `Bot` in this process holds (a second `Bot` here on one of them is refused too). */
const heldHere = new Set<string>();

/**
 * Takes the bot directory's lock: `bot.lock`, created exclusively, with this
 * process's id. A lock left by a process that is gone (on this machine) is
 * taken over.
 * @returns a function that releases it (only if it is still this holder's)
 * @throws BotLockedError when a live process (or another bot in this one) holds it
 */
export function lockStore(dir: string): () => void {
  const path = join(dir, lockFileName);
  const token = randomBytes(8).toString("hex");
  const me: StoreLockHolder & { token: string } = { pid: process.pid, hostname: hostname(), since: Date.now(), token };
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(path, `${JSON.stringify(me)}\n`, { flag: "wx", mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    let holder: StoreLockHolder | null = null;
    try {
      holder = JSON.parse(readFileSync(path, "utf8")) as StoreLockHolder;
    } catch {
      // Unreadable (a crash while writing it): nobody can hold it.
    }
    const stale =
      !holder ||
      typeof holder.pid !== "number" ||
      (holder.hostname === me.hostname && (holder.pid === process.pid ? !heldHere.has(dir) : !alive(holder.pid)));
    // A lock that appeared between removing a stale one and taking it belongs to a process that just started.
    if (!stale || attempt > 0)
      throw new BotLockedError(dir, path, holder ?? { pid: 0, hostname: "an unknown host", since: Date.now() });
    rmSync(path, { force: true });
  }
  heldHere.add(dir);
  return () => {
    heldHere.delete(dir);
    try {
      const current = JSON.parse(readFileSync(path, "utf8")) as { token?: string };
      if (current.token === token) rmSync(path, { force: true });
    } catch {
      // Already gone.
    }
  };
}
