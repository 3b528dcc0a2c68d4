#!/usr/bin/env node
// `npm run build`: the Prisma clients, then every TypeScript project (`tsc -b`
// from the root tsconfig.json), then the web UI bundle (scripts/build-web-ui.mjs),
// one progress line per step.
//
// A build with nothing to do is fast: the Prisma clients are generated again
// only when their input changed (prisma/models.prisma, the generator script
// or the Prisma version, hashed into a stamp beside the generated clients),
// and `tsc -b` rebuilds only the projects whose inputs are newer than their
// build info. ZIMCHAT_BUILD_FORCE=1 regenerates the Prisma clients anyway.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { buildWebUi } from "./build-web-ui.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const require = createRequire(import.meta.url);
const generated = join(root, "server/src/generated");
const stampFile = join(generated, ".inputs.sha256");
const started = Date.now();
const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`;
const say = (line) => console.log(`build: ${line}`);

function run(args, onLine) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    createInterface({ input: child.stdout }).on("line", onLine);
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`${args.map((a) => relative(root, a) || a).join(" ")} failed (${code ?? signal})`)),
    );
  });
}

/** What the generated Prisma clients depend on. */
function prismaInputs() {
  const hash = createHash("sha256");
  for (const file of ["prisma/models.prisma", "server/scripts/prisma-generate.mjs"])
    hash.update(file).update(readFileSync(join(root, file)));
  for (const pkg of ["prisma/package.json", "@prisma/client/package.json"])
    hash.update(pkg).update(JSON.parse(readFileSync(require.resolve(pkg), "utf8")).version);
  return hash.digest("hex");
}

async function prisma() {
  const t = Date.now();
  const inputs = prismaInputs();
  const fresh =
    process.env.ZIMCHAT_BUILD_FORCE !== "1" &&
    existsSync(stampFile) &&
    readFileSync(stampFile, "utf8").trim() === inputs &&
    ["prisma-sqlite", "prisma-postgresql"].every((d) => existsSync(join(generated, d)));
  if (fresh) return say("Prisma clients up to date");
  say("generating the Prisma clients (sqlite, postgresql)...");
  await run([join(root, "server/scripts/prisma-generate.mjs")], (line) => console.log(line));
  writeFileSync(stampFile, `${inputs}\n`);
  say(`Prisma clients generated (${seconds(t)})`);
}

async function typescript() {
  const t = Date.now();
  let built = 0;
  // --verbose names each project as it is built; the rest of its chatter is dropped, errors pass through.
  const tsc = require.resolve("typescript/bin/tsc");
  let chatter = false;
  await run([tsc, "-b", "--verbose", ...(process.stdout.isTTY ? ["--pretty"] : [])], (line) => {
    // "[7:54:08 AM] …" (pretty, coloured) or "7:54:08 AM - …" (plain); the clock's format follows the locale.
    const info = /^(?:\x1b\[[\d;]*m)?\[?\d{1,2}[:.]\d\d[:.]\d\d(?:\s?[AP]M)?\]?(?:\x1b\[[\d;]*m)?(?: -)? (.*)$/.exec(
      line,
    );
    if (info) {
      chatter = true;
      const building = /^Building project '(.*)'\.\.\.$/.exec(info[1]);
      if (building) {
        built += 1;
        say(`compiling ${relative(root, building[1]).replace(/\/tsconfig\.json$/, "")}`);
      }
      return;
    }
    if (chatter && (/^ {4}\* /.test(line) || line.trim() === "")) return;
    chatter = false;
    console.log(line);
  });
  say(built ? `TypeScript: ${built} project(s) compiled (${seconds(t)})` : `TypeScript up to date (${seconds(t)})`);
}

/** The browser UI of `zimchat-chat web`, bundled by esbuild (tsc has type-checked it): a fraction of a second. */
async function webUi() {
  const t = Date.now();
  const files = await buildWebUi();
  const kb = (files.reduce((sum, f) => sum + f.bytes, 0) / 1024).toFixed(0);
  say(`web UI bundled into client/dist/web (${files.length} files, ${kb} KB, ${seconds(t)})`);
}

try {
  await prisma();
  await typescript();
  await webUi();
  say(`done in ${seconds(started)}`);
} catch (error) {
  console.error(`build: ${error.message}`);
  process.exit(1);
}
