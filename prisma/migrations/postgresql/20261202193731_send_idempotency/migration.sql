-- CreateTable
CREATE TABLE "SendIdempotency" (
    "keyHash" TEXT NOT NULL,
    "fingerprint" TEXT NOT NULL,
    "answer" TEXT NOT NULL,
    "expiresAt" BIGINT NOT NULL,

    CONSTRAINT "SendIdempotency_pkey" PRIMARY KEY ("keyHash")
);

-- CreateIndex
CREATE INDEX "SendIdempotency_expiresAt_idx" ON "SendIdempotency"("expiresAt");
