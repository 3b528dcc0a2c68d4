-- CreateTable
CREATE TABLE "SharedPayload" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "content" BLOB NOT NULL
);

-- CreateTable
CREATE TABLE "MailboxUsage" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "envelopes" INTEGER NOT NULL DEFAULT 0,
    "bytes" BIGINT NOT NULL DEFAULT 0,

    PRIMARY KEY ("accountId", "deviceId"),
    CONSTRAINT "MailboxUsage_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device" ("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_Envelope" (
    "seq" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "id" TEXT NOT NULL,
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "type" INTEGER NOT NULL,
    "sourceAccountId" TEXT,
    "sourceDeviceId" INTEGER,
    "content" BLOB NOT NULL,
    "sharedPayloadId" TEXT,
    "size" INTEGER NOT NULL DEFAULT 0,
    "serverTimestamp" BIGINT NOT NULL,
    "expiresAt" BIGINT NOT NULL,
    CONSTRAINT "Envelope_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device" ("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_Envelope" ("accountId", "content", "deviceId", "expiresAt", "id", "seq", "serverTimestamp", "sourceAccountId", "sourceDeviceId", "type") SELECT "accountId", "content", "deviceId", "expiresAt", "id", "seq", "serverTimestamp", "sourceAccountId", "sourceDeviceId", "type" FROM "Envelope";
DROP TABLE "Envelope";
ALTER TABLE "new_Envelope" RENAME TO "Envelope";
CREATE UNIQUE INDEX "Envelope_id_key" ON "Envelope"("id");
CREATE INDEX "Envelope_accountId_deviceId_seq_idx" ON "Envelope"("accountId", "deviceId", "seq");
CREATE INDEX "Envelope_expiresAt_idx" ON "Envelope"("expiresAt");
CREATE INDEX "Envelope_sharedPayloadId_idx" ON "Envelope"("sharedPayloadId");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

-- Backfill (hand-written): sizes and mailbox usage of the envelopes already queued,
-- and server timestamps rounded down to the minute like new ones.
UPDATE "Envelope" SET "size" = length("content"),
  "serverTimestamp" = "serverTimestamp" - ("serverTimestamp" % 60000),
  "expiresAt" = "expiresAt" - ("expiresAt" % 60000);
INSERT INTO "MailboxUsage" ("accountId", "deviceId", "envelopes", "bytes")
  SELECT "accountId", "deviceId", count(*), sum("size") FROM "Envelope" GROUP BY "accountId", "deviceId";
