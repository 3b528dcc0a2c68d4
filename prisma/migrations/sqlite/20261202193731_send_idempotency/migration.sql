-- CreateTable
CREATE TABLE "SendIdempotency" (
    "keyHash" TEXT NOT NULL PRIMARY KEY,
    "fingerprint" TEXT NOT NULL,
    "answer" TEXT NOT NULL,
    "expiresAt" BIGINT NOT NULL
);

-- CreateIndex
CREATE INDEX "SendIdempotency_expiresAt_idx" ON "SendIdempotency"("expiresAt");
