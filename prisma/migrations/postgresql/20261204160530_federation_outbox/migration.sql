-- AlterTable
ALTER TABLE "Envelope" ADD COLUMN     "sourceServer" TEXT;

-- CreateTable
CREATE TABLE "FederationOutbox" (
    "seq" SERIAL NOT NULL,
    "id" TEXT NOT NULL,
    "server" TEXT NOT NULL,
    "destination" TEXT NOT NULL,
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "messages" TEXT NOT NULL,
    "expiresAt" BIGINT NOT NULL,
    "failure" TEXT,

    CONSTRAINT "FederationOutbox_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "FederationPeer" (
    "server" TEXT NOT NULL,
    "failures" INTEGER NOT NULL DEFAULT 0,
    "nextAttemptAt" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "FederationPeer_pkey" PRIMARY KEY ("server")
);

-- CreateIndex
CREATE UNIQUE INDEX "FederationOutbox_id_key" ON "FederationOutbox"("id");

-- CreateIndex
CREATE INDEX "FederationOutbox_server_seq_idx" ON "FederationOutbox"("server", "seq");

-- CreateIndex
CREATE INDEX "FederationOutbox_accountId_deviceId_idx" ON "FederationOutbox"("accountId", "deviceId");

-- CreateIndex
CREATE INDEX "FederationOutbox_expiresAt_idx" ON "FederationOutbox"("expiresAt");
