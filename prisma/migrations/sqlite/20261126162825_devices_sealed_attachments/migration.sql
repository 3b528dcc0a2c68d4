-- CreateTable
CREATE TABLE "LinkCode" (
    "codeHash" BLOB NOT NULL PRIMARY KEY,
    "accountId" TEXT,
    "provisioningMessage" BLOB,
    "expiresAt" BIGINT NOT NULL,
    CONSTRAINT "LinkCode_accountId_fkey" FOREIGN KEY ("accountId") REFERENCES "Account" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "Attachment" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "accountId" TEXT NOT NULL,
    "size" BIGINT NOT NULL,
    "createdAt" BIGINT NOT NULL,
    "expiresAt" BIGINT NOT NULL,
    CONSTRAINT "Attachment_accountId_fkey" FOREIGN KEY ("accountId") REFERENCES "Account" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- AlterTable (ADD COLUMN keeps the rows: a table redefinition would cascade deletes)
ALTER TABLE "Account" ADD COLUMN "accessKeyHash" BLOB;
ALTER TABLE "Account" ADD COLUMN "unrestrictedAccess" BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE "Device" ADD COLUMN "lastSeenDay" INTEGER NOT NULL DEFAULT 0;

-- CreateIndex
CREATE INDEX "LinkCode_expiresAt_idx" ON "LinkCode"("expiresAt");

-- CreateIndex
CREATE INDEX "Attachment_accountId_idx" ON "Attachment"("accountId");

-- CreateIndex
CREATE INDEX "Attachment_expiresAt_idx" ON "Attachment"("expiresAt");
