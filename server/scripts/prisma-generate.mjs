#!/usr/bin/env node
// Composes the provider-specific Prisma schemas from prisma/models.prisma and
// generates one Prisma client per provider into server/src/generated/.
//
// The Prisma CLI wants its native schema engine at start-up even for
// `generate`, which never runs it; it cannot be downloaded here, so we point
// PRISMA_SCHEMA_ENGINE_BINARY at an existing executable (see ENVIRONMENT.md).
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const outRoot = join(root, "server/src/generated");
const models = readFileSync(join(root, "prisma/models.prisma"), "utf8");
const prismaCli = createRequire(import.meta.url).resolve("prisma/build/index.js");

export const providers = ["sqlite", "postgresql"];

/** The full schema text for one provider. */
export function composeSchema(provider, modelsText = models) {
  return `// Generated from prisma/models.prisma by server/scripts/prisma-generate.mjs. Do not edit.
generator client {
  provider     = "prisma-client"
  output       = "../../prisma-${provider}"
  moduleFormat = "esm"
  runtime      = "nodejs"
  importFileExtension = "js"
}

datasource db {
  provider = "${provider}"
}

${modelsText}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const provider of providers) {
    const dir = join(outRoot, "schema", provider);
    mkdirSync(dir, { recursive: true });
    const schemaPath = join(dir, "schema.prisma");
    writeFileSync(schemaPath, composeSchema(provider));
    execFileSync(process.execPath, [prismaCli, "generate", "--schema", schemaPath], {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: process.execPath, PRISMA_HIDE_UPDATE_MESSAGE: "1" },
    });
  }
}
