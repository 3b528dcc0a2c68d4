-- AlterTable
ALTER TABLE "Account" ADD COLUMN "disabledAt" DATETIME;
