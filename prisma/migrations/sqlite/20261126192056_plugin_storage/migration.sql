-- CreateTable
CREATE TABLE "PluginEntry" (
    "plugin" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "value" TEXT NOT NULL,

    PRIMARY KEY ("plugin", "key")
);
