#!/usr/bin/env node
// Runs the whole suite (compiled by `npm run build`) on SQLite, and again on
// PostgreSQL when DATABASE_URL (or ZIMCHAT_TEST_DATABASE_URL) names one.
// Each test file makes its own throwaway database (a temp SQLite file or a
// fresh PostgreSQL schema), so the runs do not touch each other.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
function testFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...testFiles(path));
    else if (name.endsWith(".test.js")) out.push(path);
  }
  return out.sort();
}
const only = process.argv.slice(2);
const files = [
  "protocol/dist/test",
  "client/dist/test",
  "server/dist/test",
  "plugin-sdk/dist/test",
  "plugins/dist/test",
  "testing/dist/test",
  "bridge/dist/test",
  "examples/dist/test",
  "bench/dist/test",
]
  .filter((d) => existsSync(join(root, d)))
  .flatMap((d) => testFiles(join(root, d)))
  .filter((f) => !only.length || only.some((o) => f.includes(o)));
// The lint rules' own tests (scripts/lint/*.test.js) are plain ESM and run from source.
files.push(...testFiles(join(root, "scripts/lint")).filter((f) => !only.length || only.some((o) => f.includes(o))));
// With no file, node --test would discover and run every test it finds: a filter that matches nothing is an error.
if (!files.length) {
  console.error(
    `test: no test file matches ${only.join(", ")} (built files under */dist/test; run npm run build first)`,
  );
  process.exit(2);
}

const postgres = [process.env.ZIMCHAT_TEST_DATABASE_URL, process.env.DATABASE_URL].find((u) =>
  u?.startsWith("postgres"),
);
const runs = [{ name: "sqlite", env: { ZIMCHAT_TEST_DATABASE_URL: "" } }];
if (postgres) runs.push({ name: "postgresql", env: { ZIMCHAT_TEST_DATABASE_URL: postgres } });

const runTimeoutMs = 30 * 60_000;
let passed = 0;
let failed = 0;
for (const run of runs) {
  console.log(`\n=== test suite on ${run.name} (${files.length} files) ===`);
  // Each run writes its own TAP file (runs may go on side by side), kept afterwards as .test-results-<run>.tap.
  const tapFile = join(root, `.test-results-${run.name}-${process.pid}.tap`);
  const result = spawnSync(
    process.execPath,
    [
      "--enable-source-maps",
      "--test",
      "--test-concurrency=2",
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      "--test-reporter=tap",
      `--test-reporter-destination=${tapFile}`,
      ...files,
    ],
    // A failed test can leave a client connected and its file's process alive: stop the run rather than hang.
    {
      stdio: "inherit",
      env: { ...process.env, ...run.env, DATABASE_URL: "" },
      cwd: root,
      timeout: runTimeoutMs,
      killSignal: "SIGTERM",
    },
  );
  if (result.error)
    console.log(`${run.name}: stopped after ${runTimeoutMs / 60_000} minutes (${result.error.message})`);
  const tap = existsSync(tapFile) ? readFileSync(tapFile, "utf8") : "";
  if (existsSync(tapFile)) renameSync(tapFile, join(root, `.test-results-${run.name}.tap`));
  const pass = Number(/^# pass (\d+)/m.exec(tap)?.[1] ?? 0);
  // A run that ended badly without reporting a failure, or reported nothing at all, counts as one failure.
  const fail =
    Number(/^# fail (\d+)/m.exec(tap)?.[1] ?? 0) +
    (((result.status !== 0 || result.error) && !/^# fail [1-9]/m.test(tap)) || !pass ? 1 : 0);
  console.log(`${run.name}: ${pass} passed, ${fail} failed`);
  passed += pass;
  failed += fail;
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
