#!/usr/bin/env node
// `npm run lint`: ESLint (the layering rules of the architecture, the
// typescript-eslint recommended rules, the line-length limit), then
// `prettier --check`. `npm test` runs it before the build and the tests, so a
// violation fails CI before the 25-minute suite starts.
// `npm run format` (`--fix`): `eslint --fix` (quietly), then `prettier --write`,
// in that order so the result is always Prettier's output and a second run
// changes nothing; then ESLint once more to list what has no automatic fix.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const fix = process.argv.includes("--fix");
const bin = (name) => join(root, "node_modules", ".bin", name);

// Both tools keep a cache under node_modules/.cache (CI starts without one). ESLint keys its cache on the
// configuration but not on the code of a local rule, so the layering rule's own hash names the cache folder.
const ruleHash = createHash("sha256")
  .update(readFileSync(join(root, "scripts/lint/restrict-imports.mjs")))
  .digest("hex")
  .slice(0, 12);
const eslintCache = [
  "--cache",
  "--cache-strategy",
  "content",
  "--cache-location",
  `node_modules/.cache/eslint-${ruleHash}/`,
];
const prettierCache = ["--cache", "--cache-location", "node_modules/.cache/prettier/.prettier-cache"];

function run(name, args, { quiet = false } = {}) {
  const started = performance.now();
  const result = spawnSync(bin(name), args, { cwd: root, stdio: quiet ? ["ignore", "ignore", "inherit"] : "inherit" });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (result.error) {
    console.error(`${name} could not start (${result.error.message}): run \`npm ci\` first.`);
    return { ok: false, seconds };
  }
  return { ok: result.status === 0, seconds };
}

/**
 * `prettier --write` until nothing changes. Prettier's output is not always stable in one pass (a long member chain can
 * be laid out differently the second time), and `npm run format` must leave nothing for a second run or for
 * `prettier --check`, so the files a pass changed go through again. No cache here: a write marks its own output as
 * formatted, which would hide exactly that second change.
 */
function prettierWrite() {
  const started = performance.now();
  let targets = ["."];
  for (let pass = 1; pass <= 4 && targets.length > 0; pass++) {
    const result = spawnSync(bin("prettier"), ["--write", "--list-different", ...targets], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (result.error || result.status === 2) {
      console.error(`prettier failed${result.error ? ` (${result.error.message}): run \`npm ci\` first` : ""}.`);
      return { ok: false, seconds: ((performance.now() - started) / 1000).toFixed(1) };
    }
    targets = result.stdout.split("\n").filter(Boolean);
    if (pass === 1) console.log(`prettier: ${targets.length} files reformatted`);
  }
  if (targets.length > 0) console.error(`prettier: these files still change on every pass: ${targets.join(", ")}`);
  return { ok: targets.length === 0, seconds: ((performance.now() - started) / 1000).toFixed(1) };
}

if (fix) {
  // The problems this first pass reports are those before Prettier wrapped the code: the last pass lists the real ones.
  const fixed = run("eslint", [...eslintCache, "--fix", "."], { quiet: true });
  const prettier = prettierWrite();
  const eslint = run("eslint", [...eslintCache, "--max-warnings", "0", "."]);
  console.log(
    `format: eslint --fix ${fixed.seconds} s, prettier --write ${prettier.seconds} s, eslint ${eslint.seconds} s`,
  );
  if (!eslint.ok) console.error("format: the ESLint problems above have no automatic fix; fix them by hand.");
  process.exit(eslint.ok && prettier.ok ? 0 : 1);
}

const eslint = run("eslint", [...eslintCache, "--max-warnings", "0", "."]);
const prettier = run("prettier", [...prettierCache, "--check", "--log-level", "warn", "."]);
console.log(`lint: eslint ${eslint.seconds} s, prettier --check ${prettier.seconds} s`);
if (eslint.ok && prettier.ok) process.exit(0);

console.error("\nlint FAILED:");
if (!eslint.ok) {
  console.error(
    "- ESLint found the problems listed above. A `layering/...` rule means an import breaks the dependency\n" +
      "  direction of the packages (the rule's name and message say which arrow): import through the layer\n" +
      "  that is allowed instead. `@stylistic/max-len`: rewrap the comment or line to 120 characters.",
  );
}
if (!prettier.ok) console.error("- Prettier: the files listed above are not formatted; run `npm run format`.");
process.exit(1);
