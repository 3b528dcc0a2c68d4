-- AlterTable
ALTER TABLE "Account" ADD COLUMN     "accessKeyHash" BYTEA,
ADD COLUMN     "unrestrictedAccess" BOOLEAN NOT NULL DEFAULT false;

-- AlterTable
ALTER TABLE "Device" ADD COLUMN     "lastSeenDay" INTEGER NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE "LinkCode" (
    "codeHash" BYTEA NOT NULL,
    "accountId" TEXT,
    "provisioningMessage" BYTEA,
    "expiresAt" BIGINT NOT NULL,

    CONSTRAINT "LinkCode_pkey" PRIMARY KEY ("codeHash")
);

-- CreateTable
CREATE TABLE "Attachment" (
    "id" TEXT NOT NULL,
    "accountId" TEXT NOT NULL,
    "size" BIGINT NOT NULL,
    "createdAt" BIGINT NOT NULL,
    "expiresAt" BIGINT NOT NULL,

    CONSTRAINT "Attachment_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "LinkCode_expiresAt_idx" ON "LinkCode"("expiresAt");

-- CreateIndex
CREATE INDEX "Attachment_accountId_idx" ON "Attachment"("accountId");

-- CreateIndex
CREATE INDEX "Attachment_expiresAt_idx" ON "Attachment"("expiresAt");

-- AddForeignKey
ALTER TABLE "LinkCode" ADD CONSTRAINT "LinkCode_accountId_fkey" FOREIGN KEY ("accountId") REFERENCES "Account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Attachment" ADD CONSTRAINT "Attachment_accountId_fkey" FOREIGN KEY ("accountId") REFERENCES "Account"("id") ON DELETE CASCADE ON UPDATE CASCADE;
