/**
 * The one line the CLI prints for a failure: what went wrong and, where
 * there is one, what to change. Never a stack trace (set ZIMCHAT_DEBUG=1
 * for one on unexpected errors).
 */
export function errorLine(error: unknown): string {
  const err = error as
    (Error & { code?: unknown; syscall?: unknown; address?: unknown; port?: unknown; path?: unknown }) | null;
  if (err?.code === "EADDRINUSE")
    return `port ${String(err.port)} on ${String(err.address)} is already in use (another zimchat running?): choose another with --port / PORT`;
  if (err?.code === "EACCES" && err.syscall === "listen")
    return `no permission to listen on port ${String(err.port)}: use a port above 1023 (and a reverse proxy for 80/443)`;
  if (err?.code === "EADDRNOTAVAIL")
    return `cannot listen on ${String(err.address)}: this machine has no such address (check --host / HOST)`;
  if (typeof err?.code === "string" && typeof err.syscall === "string") {
    const path = typeof err.path === "string" ? ` ${err.path}` : "";
    const hint =
      err.code === "EACCES" || err.code === "EPERM" ? " (check the owner and mode, or choose another --data-dir)" : "";
    return `cannot ${err.syscall}${path}: ${err.code}${hint}`;
  }
  const message = err instanceof Error ? err.message : String(error);
  // Library errors (Prisma, pg) may span lines: the first non-empty one says what happened.
  const first =
    message
      .split("\n")
      .map((l) => l.trim())
      .find(Boolean) ?? "unknown error";
  return first;
}
