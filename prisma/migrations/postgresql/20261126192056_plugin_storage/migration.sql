-- CreateTable
CREATE TABLE "PluginEntry" (
    "plugin" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "value" TEXT NOT NULL,

    CONSTRAINT "PluginEntry_pkey" PRIMARY KEY ("plugin","key")
);
