import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Prisma } from "../../src/generated/prisma-sqlite/client.js";
import { toHttpError } from "../../src/http/router.js";

// A transaction that could not start within Prisma's maxWait (or ran past its
// timeout) is rolled back: the request is answered 503 `unavailable` with
// Retry-After, so the client sends it again, instead of 500 `internal`.
describe("database busy", () => {
  it("P2028 (transaction could not start in time) is 503 unavailable with Retry-After", () => {
    const error = new Prisma.PrismaClientKnownRequestError(
      "Transaction API error: Unable to start a transaction in the given time.",
      { code: "P2028", clientVersion: Prisma.prismaVersion.client },
    );
    const refusal = toHttpError(error);
    assert.ok(refusal);
    assert.equal(refusal.status, 503);
    assert.equal(refusal.code, "unavailable");
    assert.equal(refusal.headers["Retry-After"], "1");
    assert.equal(refusal.toBody().retryAfterSeconds, 1);
  });

  it("other Prisma errors are not taken for a busy database", () => {
    const error = new Prisma.PrismaClientKnownRequestError("Unique constraint failed", {
      code: "P2002",
      clientVersion: Prisma.prismaVersion.client,
    });
    assert.equal(toHttpError(error), null);
  });
});
