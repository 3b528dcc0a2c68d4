import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../../src/db/database.js";
import { freshDatabase, testProvider } from "../support/harness.js";

describe("the SQLite storage worker", { skip: testProvider !== "sqlite" }, () => {
  const db = freshDatabase();
  let database: Database;
  before(async () => {
    database = await openDatabase({ databaseUrl: db.url, sqliteCheckpointMs: 0 });
    await database.prisma.$executeRawUnsafe(
      `CREATE TABLE "Scratch" ("id" INTEGER PRIMARY KEY, "v" TEXT NOT NULL UNIQUE)`,
    );
  });
  after(async () => {
    await database.close();
    await db.drop();
  });

  const insert = (id: number, v: string) =>
    database.prisma.$executeRawUnsafe(`INSERT INTO "Scratch" ("id", "v") VALUES (?, ?)`, id, v);
  const count = async () =>
    Number((await database.prisma.$queryRawUnsafe<{ n: bigint }[]>(`SELECT COUNT(*) AS n FROM "Scratch"`))[0]!.n);

  it("commits concurrent transactions in shared COMMITs; a failing one takes only itself back", async () => {
    await database.prisma.$executeRawUnsafe(`DELETE FROM "Scratch"`);
    const before = database.writerStats()!;
    const outcomes = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) =>
        // Transaction 7 inserts a value transaction 3 inserts too: a unique violation, after its first row.
        database.prisma.$transaction([insert(i * 2, `a${i}`), insert(i * 2 + 1, i === 7 ? "a3" : `b${i}`)]),
      ),
    );
    const failed = outcomes.flatMap((o, i) => (o.status === "rejected" ? [i] : []));
    assert.deepEqual(failed, [7]);
    assert.equal(await count(), 78, "39 transactions of two rows each; nothing of the failed one");
    const stats = database.writerStats()!;
    assert.equal(stats.members - before.members, 39);
    const commits = stats.commits - before.commits;
    assert.ok(commits < 39, `39 transactions shared ${commits} COMMITs`);
  });

  it("reads outside a transaction see committed rows only, never an open transaction's", async () => {
    await database.prisma.$executeRawUnsafe(`DELETE FROM "Scratch"`);
    let readInside = -1;
    await database.prisma.$transaction(async (tx) => {
      await tx.$executeRawUnsafe(`INSERT INTO "Scratch" ("id", "v") VALUES (1, 'open')`);
      readInside = await count();
    });
    assert.equal(readInside, 0, "the uncommitted row was not visible outside its transaction");
    assert.equal(await count(), 1);
  });

  it("answers Prisma's error codes across the thread (a unique violation is P2010 with the driver's code)", async () => {
    await database.prisma.$executeRawUnsafe(`DELETE FROM "Scratch"`);
    await insert(1, "x");
    await assert.rejects(
      insert(2, "x"),
      (error: Error & { code?: string; meta?: { driverAdapterError?: unknown } }) => {
        assert.equal(error.code, "P2010");
        assert.match(String(error.message), /UNIQUE|Unique constraint/i);
        return true;
      },
    );
    assert.equal(await count(), 1);
  });
});
