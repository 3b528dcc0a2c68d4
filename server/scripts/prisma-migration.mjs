#!/usr/bin/env node
// Writes a new migration for both providers: the SQL that takes a database from
// the committed migrations (prisma/migrations/<provider>/) to prisma/models.prisma.
// Usage: npm run db:migration -- <name>      (prints "no changes" when in sync)
//        npm run db:migration -- --check     (exit 1 when models and migrations differ)
//
// Runs Prisma's schema engine as WebAssembly (@prisma/schema-engine-wasm), since
// its native binary cannot be downloaded here; needs --experimental-wasm-modules
// on Node 20 (the npm script passes it). The "before" side is
// prisma/migrations/models.snapshot.prisma, written with each new migration.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { SchemaEngine } from "@prisma/schema-engine-wasm";
import { bindMigrationAwareSqlAdapterFactory } from "@prisma/driver-adapter-utils";
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import { composeSchema, providers } from "./prisma-generate.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const arg = process.argv[2];
if (!arg) {
  console.error("usage: npm run db:migration -- <name> | --check");
  process.exit(2);
}
const check = arg === "--check";

// The models as of the newest committed migration: diffing two datamodels needs
// no database (the engine's shadow-database replay does not work under WASM).
const snapshotPath = join(root, "prisma/migrations/models.snapshot.prisma");
const previous = existsSync(snapshotPath) ? readFileSync(snapshotPath, "utf8") : null;
const current = readFileSync(join(root, "prisma/models.prisma"), "utf8");

const target = (provider, models) => ({
  tag: "schemaDatamodel",
  files: [{ path: "schema.prisma", content: composeSchema(provider, models) }],
});

let dirty = false;
const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
for (const provider of providers) {
  const adapter = new PrismaBetterSqlite3({ url: ":memory:" }); // unused by a datamodel diff, but required
  const engine = await SchemaEngine.new(
    { datamodels: undefined },
    () => {},
    bindMigrationAwareSqlAdapterFactory(adapter),
  );
  const result = await engine.diff({
    from: previous === null ? { tag: "empty" } : target(provider, previous),
    to: target(provider, current),
    script: true,
    exitCode: true,
    filters: { externalTables: [], externalEnums: [] },
  });
  const sql = result.stdout ?? "";
  const empty = result.exitCode === 0 || /^\s*(-- This is an empty migration\.)?\s*$/.test(sql);
  if (empty) {
    console.log(`${provider}: no changes`);
    continue;
  }
  dirty = true;
  if (check) {
    console.log(`${provider}: prisma/models.prisma differs from the committed migrations:\n${sql}`);
    continue;
  }
  const baseDir = join(root, "prisma/migrations", provider);
  const dir = join(baseDir, `${stamp}_${arg.replace(/[^a-z0-9_]/gi, "_")}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "migration.sql"), sql);
  writeFileSync(join(baseDir, "migration_lock.toml"), `provider = "${provider}"\n`);
  console.log(`${provider}: wrote ${dir}/migration.sql`);
}
if (dirty && !check) writeFileSync(snapshotPath, current);
process.exit(check && dirty ? 1 : 0);
