-- CreateTable
CREATE TABLE "Account" (
    "id" TEXT NOT NULL,
    "username" TEXT NOT NULL,
    "identityKey" BYTEA NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Account_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Device" (
    "accountId" TEXT NOT NULL,
    "id" INTEGER NOT NULL,
    "registrationId" INTEGER NOT NULL,
    "passwordSalt" BYTEA NOT NULL,
    "passwordHash" BYTEA NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Device_pkey" PRIMARY KEY ("accountId","id")
);

-- CreateTable
CREATE TABLE "SignedPreKey" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "keyId" INTEGER NOT NULL,
    "publicKey" BYTEA NOT NULL,
    "signature" BYTEA NOT NULL,

    CONSTRAINT "SignedPreKey_pkey" PRIMARY KEY ("accountId","deviceId")
);

-- CreateTable
CREATE TABLE "KyberLastResortKey" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "keyId" INTEGER NOT NULL,
    "publicKey" BYTEA NOT NULL,
    "signature" BYTEA NOT NULL,

    CONSTRAINT "KyberLastResortKey_pkey" PRIMARY KEY ("accountId","deviceId")
);

-- CreateTable
CREATE TABLE "EcPreKey" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "keyId" INTEGER NOT NULL,
    "publicKey" BYTEA NOT NULL,

    CONSTRAINT "EcPreKey_pkey" PRIMARY KEY ("accountId","deviceId","keyId")
);

-- CreateTable
CREATE TABLE "KyberPreKey" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "keyId" INTEGER NOT NULL,
    "publicKey" BYTEA NOT NULL,
    "signature" BYTEA NOT NULL,

    CONSTRAINT "KyberPreKey_pkey" PRIMARY KEY ("accountId","deviceId","keyId")
);

-- CreateTable
CREATE TABLE "Envelope" (
    "seq" SERIAL NOT NULL,
    "id" TEXT NOT NULL,
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "type" INTEGER NOT NULL,
    "sourceAccountId" TEXT,
    "sourceDeviceId" INTEGER,
    "content" BYTEA NOT NULL,
    "serverTimestamp" BIGINT NOT NULL,
    "expiresAt" BIGINT NOT NULL,

    CONSTRAINT "Envelope_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "Invite" (
    "id" TEXT NOT NULL,
    "tokenHash" BYTEA NOT NULL,
    "maxUses" INTEGER NOT NULL,
    "uses" INTEGER NOT NULL DEFAULT 0,
    "expiresAt" TIMESTAMP(3) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revokedAt" TIMESTAMP(3),

    CONSTRAINT "Invite_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Account_username_key" ON "Account"("username");

-- CreateIndex
CREATE UNIQUE INDEX "Envelope_id_key" ON "Envelope"("id");

-- CreateIndex
CREATE INDEX "Envelope_accountId_deviceId_seq_idx" ON "Envelope"("accountId", "deviceId", "seq");

-- CreateIndex
CREATE INDEX "Envelope_expiresAt_idx" ON "Envelope"("expiresAt");

-- CreateIndex
CREATE UNIQUE INDEX "Invite_tokenHash_key" ON "Invite"("tokenHash");

-- AddForeignKey
ALTER TABLE "Device" ADD CONSTRAINT "Device_accountId_fkey" FOREIGN KEY ("accountId") REFERENCES "Account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "SignedPreKey" ADD CONSTRAINT "SignedPreKey_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device"("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "KyberLastResortKey" ADD CONSTRAINT "KyberLastResortKey_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device"("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "EcPreKey" ADD CONSTRAINT "EcPreKey_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device"("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "KyberPreKey" ADD CONSTRAINT "KyberPreKey_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device"("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Envelope" ADD CONSTRAINT "Envelope_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device"("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE;
