/** Which database a URL names. */
export type DatabaseTarget =
  { provider: "sqlite"; path: string } | { provider: "postgresql"; connectionString: string; schema: string };

/**
 * Parses `file:/path/to.db` or `postgresql://...[?schema=name]` (Prisma's
 * convention for the PostgreSQL schema; default `public`).
 */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  if (url.startsWith("file:")) return { provider: "sqlite", path: url.slice("file:".length) };
  const parsed = new URL(url);
  const schema = parsed.searchParams.get("schema") ?? "public";
  parsed.searchParams.delete("schema");
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid PostgreSQL schema name "${schema}"`);
  return { provider: "postgresql", connectionString: parsed.toString(), schema };
}
