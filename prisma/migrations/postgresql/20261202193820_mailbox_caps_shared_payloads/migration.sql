-- AlterTable
ALTER TABLE "Envelope" ADD COLUMN     "sharedPayloadId" TEXT,
ADD COLUMN     "size" INTEGER NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE "SharedPayload" (
    "id" TEXT NOT NULL,
    "content" BYTEA NOT NULL,

    CONSTRAINT "SharedPayload_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "MailboxUsage" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "envelopes" INTEGER NOT NULL DEFAULT 0,
    "bytes" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "MailboxUsage_pkey" PRIMARY KEY ("accountId","deviceId")
);

-- CreateIndex
CREATE INDEX "Envelope_sharedPayloadId_idx" ON "Envelope"("sharedPayloadId");

-- AddForeignKey
ALTER TABLE "MailboxUsage" ADD CONSTRAINT "MailboxUsage_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device"("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Backfill (hand-written): sizes and mailbox usage of the envelopes already queued,
-- and server timestamps rounded down to the minute like new ones.
UPDATE "Envelope" SET "size" = length("content"),
  "serverTimestamp" = "serverTimestamp" - ("serverTimestamp" % 60000),
  "expiresAt" = "expiresAt" - ("expiresAt" % 60000);
INSERT INTO "MailboxUsage" ("accountId", "deviceId", "envelopes", "bytes")
  SELECT "accountId", "deviceId", count(*), sum("size") FROM "Envelope" GROUP BY "accountId", "deviceId";
