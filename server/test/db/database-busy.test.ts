import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../../src/db/database.js";
import { toHttpError } from "../../src/http/router.js";
import { freshDatabase } from "../support/harness.js";

// A transaction that cannot start within its maxWait (the database is busy
// with others) is rolled back by Prisma (P2028). The request is answered 503
// `unavailable` with Retry-After, so the client sends it again; before, it was
// a 500 `internal`. Both providers: the real database, a real held transaction.
describe("a busy database", () => {
  const db = freshDatabase();
  let database: Database;
  before(async () => {
    database = await openDatabase({ databaseUrl: db.url, sqliteCheckpointMs: 0 });
  });
  after(async () => {
    await database.close();
    await db.drop();
  });

  it("a transaction that cannot start in time is 503 unavailable with Retry-After, and stores nothing", async () => {
    // Prisma's maxWait timer does not hold the process open (a server's sockets do): this does, meanwhile.
    const keepAlive = setInterval(() => {}, 1000);
    const count = () => database.prisma.invite.count();
    const before = await count();
    // SQLite has one writer; PostgreSQL's pool has 10 connections: hold all of them.
    const holders = database.provider === "sqlite" ? 1 : 10;
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let started = 0;
    const holding = Array.from({ length: holders }, () =>
      database.prisma.$transaction(
        async (tx) => {
          await tx.invite.count();
          started++;
          await released;
        },
        { timeout: 20_000 },
      ),
    );
    while (started < holders) await new Promise((resolve) => setTimeout(resolve, 10));
    const refused = await database.prisma
      .$transaction(
        (tx) =>
          tx.invite.create({
            data: { id: "busy-test", tokenHash: new Uint8Array(32), maxUses: 1, expiresAt: new Date() },
          }),
        { maxWait: 200 },
      )
      .then(
        () => null,
        (error: unknown) => error,
      );
    release();
    await Promise.all(holding);
    clearInterval(keepAlive);
    assert.ok(refused, "the transaction should not have started");
    const answer = toHttpError(refused);
    assert.ok(answer, `not mapped: ${String(refused)}`);
    assert.equal(answer.status, 503);
    assert.equal(answer.code, "unavailable");
    assert.equal(answer.headers["Retry-After"], "1");
    assert.equal(answer.toBody().retryAfterSeconds, 1);
    assert.equal(await count(), before, "nothing stored");
  });
});
