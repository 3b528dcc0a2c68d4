import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../../src/db/database.js";
import { Prisma } from "../../src/generated/prisma-sqlite/client.js";
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

  const insertSql = (id: number, v: string) => Prisma.sql`INSERT INTO "Scratch" ("id", "v") VALUES (${id}, ${v})`;

  it("runs batches that wait together in one group; a batch that breaks a constraint takes only itself back", async () => {
    await database.prisma.$executeRawUnsafe(`DELETE FROM "Scratch"`);
    const before = database.writerStats()!;
    const outcomes = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) =>
        i % 10 === 5
          ? // Interactive transactions queue among the batches and join the same groups.
            database.prisma.$transaction([insert(i * 2, `a${i}`), insert(i * 2 + 1, `b${i}`)])
          : // Batch 7's second row repeats batch 3's value: a unique violation, after its first row.
            database.sql.batch([insertSql(i * 2, `a${i}`), insertSql(i * 2 + 1, i === 7 ? "a3" : `b${i}`)]),
      ),
    );
    const failed = outcomes.flatMap((o, i) => (o.status === "rejected" ? [i] : []));
    assert.deepEqual(failed, [7]);
    const rejection = (outcomes[7] as PromiseRejectedResult).reason as { cause?: { kind?: string } };
    assert.equal(rejection.cause?.kind, "UniqueConstraintViolation");
    assert.equal(await count(), 78, "39 members of two rows each; nothing of the failed batch");
    const stats = database.writerStats()!;
    assert.equal(stats.members - before.members, 39);
    const commits = stats.commits - before.commits;
    assert.ok(commits < 10, `39 members shared ${commits} COMMITs`);
  });

  it("answers each statement's rows from inside the batch's transaction", async () => {
    await database.prisma.$executeRawUnsafe(`DELETE FROM "Scratch"`);
    const [inserted, counted, deleted] = await database.sql.batch([
      insertSql(1, "one"),
      Prisma.sql`SELECT COUNT(*) AS "n" FROM "Scratch"`,
      Prisma.sql`DELETE FROM "Scratch" WHERE "id" = ${1} RETURNING "v"`,
    ]);
    assert.deepEqual(inserted, []);
    assert.equal(Number(counted![0]!.n), 1, "the batch's own insert is visible to its later statements");
    assert.deepEqual(deleted, [{ v: "one" }]);
    assert.equal(await count(), 0);
  });

  it("rolls back a whole group when a statement fails otherwise (no member is told it committed)", async () => {
    await database.prisma.$executeRawUnsafe(`DELETE FROM "Scratch"`);
    // An interactive transaction holds the writer while four batches queue behind it; then they all
    // join its group, and the third batch's statement fails (no such table).
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const holding = new Promise<void>((resolve) => (started = resolve));
    const interactive = database.prisma.$transaction(async (tx) => {
      await tx.$executeRawUnsafe(`INSERT INTO "Scratch" ("id", "v") VALUES (1, 'interactive')`);
      started();
      await held;
    });
    await holding;
    const batches = [
      database.sql.batch([insertSql(2, "second")]),
      database.sql.batch([insertSql(3, "third")]),
      database.sql.batch([Prisma.sql`INSERT INTO "NoSuchTable" ("v") VALUES (${"x"})`]),
      database.sql.batch([insertSql(4, "fourth")]),
    ];
    release();
    const outcomes = await Promise.allSettled([interactive, ...batches]);
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ["rejected", "rejected", "rejected", "rejected", "rejected"],
    );
    assert.equal(await count(), 0, "the group rolled back as a whole");
    // The writer is free again: the next batch commits.
    await database.sql.batch([insertSql(5, "after")]);
    assert.equal(await count(), 1);
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
