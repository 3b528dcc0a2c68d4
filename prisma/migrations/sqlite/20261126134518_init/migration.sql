-- CreateTable
CREATE TABLE "Account" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "username" TEXT NOT NULL,
    "identityKey" BLOB NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- CreateTable
CREATE TABLE "Device" (
    "accountId" TEXT NOT NULL,
    "id" INTEGER NOT NULL,
    "registrationId" INTEGER NOT NULL,
    "passwordSalt" BLOB NOT NULL,
    "passwordHash" BLOB NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,

    PRIMARY KEY ("accountId", "id"),
    CONSTRAINT "Device_accountId_fkey" FOREIGN KEY ("accountId") REFERENCES "Account" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "SignedPreKey" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "keyId" INTEGER NOT NULL,
    "publicKey" BLOB NOT NULL,
    "signature" BLOB NOT NULL,

    PRIMARY KEY ("accountId", "deviceId"),
    CONSTRAINT "SignedPreKey_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device" ("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "KyberLastResortKey" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "keyId" INTEGER NOT NULL,
    "publicKey" BLOB NOT NULL,
    "signature" BLOB NOT NULL,

    PRIMARY KEY ("accountId", "deviceId"),
    CONSTRAINT "KyberLastResortKey_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device" ("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "EcPreKey" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "keyId" INTEGER NOT NULL,
    "publicKey" BLOB NOT NULL,

    PRIMARY KEY ("accountId", "deviceId", "keyId"),
    CONSTRAINT "EcPreKey_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device" ("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "KyberPreKey" (
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "keyId" INTEGER NOT NULL,
    "publicKey" BLOB NOT NULL,
    "signature" BLOB NOT NULL,

    PRIMARY KEY ("accountId", "deviceId", "keyId"),
    CONSTRAINT "KyberPreKey_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device" ("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "Envelope" (
    "seq" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "id" TEXT NOT NULL,
    "accountId" TEXT NOT NULL,
    "deviceId" INTEGER NOT NULL,
    "type" INTEGER NOT NULL,
    "sourceAccountId" TEXT,
    "sourceDeviceId" INTEGER,
    "content" BLOB NOT NULL,
    "serverTimestamp" BIGINT NOT NULL,
    "expiresAt" BIGINT NOT NULL,
    CONSTRAINT "Envelope_accountId_deviceId_fkey" FOREIGN KEY ("accountId", "deviceId") REFERENCES "Device" ("accountId", "id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "Invite" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "tokenHash" BLOB NOT NULL,
    "maxUses" INTEGER NOT NULL,
    "uses" INTEGER NOT NULL DEFAULT 0,
    "expiresAt" DATETIME NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revokedAt" DATETIME
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
