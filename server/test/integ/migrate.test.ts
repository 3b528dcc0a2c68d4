import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { migrate, MigrationError, openDatabase, parseDatabaseUrl } from "../../src/index.js";
import { defaultMigrationsDir } from "../../src/db/migrate.js";
import { freshDatabase, testProvider } from "../support/harness.js";

const root = fileURLToPath(new URL("../../../../", import.meta.url));
const bin = join(root, "server/bin/zimchat.js");

describe("migrations", () => {
  it("`zimchat migrate` applies every migration once, then reports the database up to date", async () => {
    const db = freshDatabase();
    try {
      const run = (): string =>
        execFileSync(process.execPath, [bin, "migrate", "--database-url", db.url, "--data-dir", db.dataDir], {
          encoding: "utf8",
        });
      assert.match(run(), /^applied: \d+_init/);
      assert.match(run(), /up to date/);
      const database = await openDatabase({ databaseUrl: db.url });
      assert.deepEqual(await database.check(), { database: true, migrations: true });
      const rows = await database.prisma.$queryRawUnsafe<{ migration_name: string }[]>(
        `SELECT migration_name FROM "_prisma_migrations"`,
      );
      assert.equal(
        rows.length,
        readdirSync(join(defaultMigrationsDir, testProvider)).filter((d) => /^\d+_/.test(d)).length,
      );
      await database.close();
    } finally {
      await db.drop();
    }
  });

  it("refuses to start on a database whose applied migration was edited", async () => {
    const db = freshDatabase();
    const dir = mkdtempSync(join(tmpdir(), "zimchat-migrations-"));
    try {
      cpSync(defaultMigrationsDir, dir, { recursive: true });
      await migrate(parseDatabaseUrl(db.url), dir);
      const [first] = readdirSync(join(dir, testProvider)).filter((d) => /^\d+_/.test(d));
      writeFileSync(join(dir, testProvider, first!, "migration.sql"), "-- edited\n", { flag: "a" });
      await assert.rejects(
        migrate(parseDatabaseUrl(db.url), dir),
        (error: unknown) => error instanceof MigrationError && /edited/.test(error.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await db.drop();
    }
  });

  it("the committed migrations match prisma/models.prisma for both providers", () => {
    const result = spawnSync(
      process.execPath,
      ["--experimental-wasm-modules", "--no-warnings", join(root, "server/scripts/prisma-migration.mjs"), "--check"],
      {
        encoding: "utf8",
      },
    );
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /sqlite: no changes/);
    assert.match(result.stdout, /postgresql: no changes/);
  });
});
