#!/usr/bin/env node
// Builds the single-file binary dist/zimchat-linux-x64 (Node's single
// executable applications) from the compiled workspaces (`npm run build`
// first; `npm run build:binary` does both):
//  1. esbuild bundles the CLI (server/dist/src/cli/main.js) and everything it
//     imports into one CommonJS file, with scripts/binary/runtime.mjs doing
//     at run time what the repository layout did: `import.meta.url`, native
//     addons (`bindings`, `node-gyp-build`) and run-time `import(x)` are
//     rewritten to it (see that file);
//  2. the native addons the bundle loads and the files code reads beside
//     itself (`dataFiles`) become SEA assets, named by their repository path;
//  3. `node --experimental-sea-config` makes the blob, postject injects it
//     into a copy of this node executable.
// Usage: node scripts/build-binary.mjs [--out <file>]   (default dist/zimchat-linux-x64)
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const require = createRequire(import.meta.url);
const outIndex = process.argv.indexOf("--out");
const output = resolve(outIndex > 0 ? process.argv[outIndex + 1] : join(root, "dist", "zimchat-linux-x64"));
// The intermediate files (bundle, SEA config, blob) go beside the output, so builds to different outputs do not
// collide.
const work = `${output}.build`;
const entry = join(root, "server", "dist", "src", "cli", "main.js");
const runtime = join(root, "scripts", "binary", "runtime.mjs");

if (process.platform !== "linux" || process.arch !== "x64")
  throw new Error(`the binary is built for linux-x64, on linux-x64 (this is ${process.platform}-${process.arch})`);
if (!existsSync(entry)) throw new Error(`${relative(root, entry)} is missing: run \`npm run build\` first`);

/** Files the code reads relative to its own `import.meta.url`, carried as they lie in the repository. */
const dataFiles = ["prisma/migrations", "server/package.json"];

/** Modules that `loadPlugins` may `import()` by name and that the binary carries inside: the first-party plugins. */
const pluginsPackage = JSON.parse(readFileSync(join(root, "plugins", "package.json"), "utf8"));
const bundledModuleNames = Object.keys(pluginsPackage.exports).map(
  (sub) => `${pluginsPackage.name}/${sub.replace(/^\.\//, "")}`,
);

const repoPath = (file) => relative(root, file).split(sep).join("/");
const assets = new Map(); // repository path -> absolute path

function addFiles(path) {
  const absolute = join(root, path);
  if (statSync(absolute).isDirectory()) for (const name of readdirSync(absolute)) addFiles(`${path}/${name}`);
  else assets.set(path, absolute);
}
for (const path of dataFiles) addFiles(path);

/** The package directory (holding package.json) of a file inside node_modules. */
function packageDir(file) {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir))
    if (existsSync(join(dir, "package.json"))) return dir;
  throw new Error(`no package.json above ${file}`);
}

const manifestPlaceholder = "zimchat-binary-manifest-placeholder";
const runtimeImport = (names) => `import { ${names} } from ${JSON.stringify(runtime)};\n`;
// The loader packages are CommonJS (`module.exports = fn`), and so are their stand-ins.
const runtimeRequire = (names) => `const { ${names} } = require(${JSON.stringify(runtime)});\n`;

/** Rewrites the run-time file lookups of the bundled code to scripts/binary/runtime.mjs. */
const binaryRuntime = {
  name: "zimchat-binary-runtime",
  setup(b) {
    // bindings('x.node') finds the addon from the caller's stack trace, which points into the binary: load the
    // package's build/Release addon directly.
    b.onResolve({ filter: /^bindings$/ }, (args) => ({ path: packageDir(args.importer), namespace: "bindings" }));
    b.onLoad({ filter: /.*/, namespace: "bindings" }, (args) => {
      const release = join(args.path, "build", "Release");
      for (const name of readdirSync(release).filter((n) => n.endsWith(".node")))
        assets.set(repoPath(join(release, name)), join(release, name));
      return {
        contents: `${runtimeRequire("requireAddon")}module.exports = (name) => requireAddon(${JSON.stringify(repoPath(release) + "/")} + (name.endsWith(".node") ? name : name + ".node"));`,
        resolveDir: root,
      };
    });
    // node-gyp-build(dir) picks the prebuild for this platform: pick it now, carry it, load it from the cache.
    b.onResolve({ filter: /^node-gyp-build$/ }, (args) => ({
      path: packageDir(args.importer),
      namespace: "node-gyp-build",
    }));
    b.onLoad({ filter: /.*/, namespace: "node-gyp-build" }, (args) => {
      const addon = createRequire(join(args.path, "package.json"))("node-gyp-build").resolve(args.path);
      assets.set(repoPath(addon), addon);
      return {
        contents: `${runtimeRequire("requireAddon")}module.exports = () => requireAddon(${JSON.stringify(repoPath(addon))});`,
        resolveDir: root,
      };
    });
    b.onResolve({ filter: /^zimchat:binary-manifest$/ }, () => ({ path: "manifest", namespace: "zimchat-manifest" }));
    b.onLoad({ filter: /.*/, namespace: "zimchat-manifest" }, () => ({
      // The asset list and hash are known once the bundle is built (they depend on what it loaded): a placeholder until
      // then.
      contents: `export const manifest = JSON.parse(${JSON.stringify(manifestPlaceholder)});\nexport const bundledModules = {\n${bundledModuleNames.map((n) => `  ${JSON.stringify(n)}: () => import(${JSON.stringify(n)}),`).join("\n")}\n};\n`,
      resolveDir: root,
    }));
    b.onLoad({ filter: /\.m?js$/ }, (args) => {
      if (args.path === runtime) return undefined;
      const source = readFileSync(args.path, "utf8");
      const ownCode = !args.path.includes(`${sep}node_modules${sep}`);
      const dynamicImport = ownCode && /\bimport\((?!\s*["'`])/.test(source);
      if (!source.includes("import.meta") && !dynamicImport) return undefined;
      const path = JSON.stringify(repoPath(args.path));
      let contents = source
        .replaceAll("import.meta.url", `moduleUrl(${path})`)
        .replaceAll("import.meta.dirname", `moduleDirname(${path})`);
      if (dynamicImport) contents = contents.replace(/\bimport\((?!\s*["'`])/g, "dynamicImport(");
      return {
        contents: runtimeImport("moduleUrl, moduleDirname, dynamicImport") + contents,
        loader: "js",
        resolveDir: dirname(args.path),
      };
    });
  },
};

/**
 * Runs a build step, showing its output only when it fails (postject warns about ELF note sections it leaves alone).
 */
function quietly(command, args) {
  try {
    execFileSync(command, args, { cwd: work, stdio: "pipe" });
  } catch (error) {
    process.stderr.write(`${error.stdout ?? ""}${error.stderr ?? ""}`);
    throw error;
  }
}

const started = Date.now();
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const bundle = join(work, "zimchat.cjs");
/** esbuild options of both bundles: the CLI, and the storage worker the CLI starts as a thread. */
const bundleOptions = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  plugins: [binaryRuntime],
  // pg's optional native binding is never enabled by the server.
  external: ["pg-native"],
  // The SEA main script has no loader for import(): every import() left in the bundle becomes require().
  supported: { "dynamic-import": false },
  logLevel: "warning",
  // An `import.meta` form the rewrite above does not know would be empty in the bundle: fail the build instead.
  logOverride: { "empty-import-meta": "error" },
  legalComments: "eof",
  // The SEA main script's own require() loads built-in modules only (and warns for others): optional
  // dependencies probed with require() (ws's bufferutil) must fail quietly, as they do from node_modules.
  banner: { js: 'if (require("node:sea").isSea()) require = require("node:module").createRequire(process.execPath);' },
};
await build({ ...bundleOptions, entryPoints: [entry], outfile: bundle });
// The SQLite storage worker (server/src/db/sqlite-worker.ts) runs from a file: its bundle is an asset at the
// compiled worker's repository path, where `new URL("./sqlite-worker.js", import.meta.url)` looks for it.
const workerPath = "server/dist/src/db/sqlite-worker.js";
const workerBundle = join(work, "sqlite-worker.cjs");
await build({ ...bundleOptions, entryPoints: [join(root, workerPath)], outfile: workerBundle });
assets.set(workerPath, workerBundle);
// The bundle is CommonJS, and server/package.json (carried) says "module": a package.json beside it says otherwise.
const workerPackage = join(work, "sqlite-worker.package.json");
writeFileSync(workerPackage, '{ "type": "commonjs" }\n');
assets.set("server/dist/src/db/package.json", workerPackage);

// Content hash of everything carried: the cache directory name, so a new build never reuses an old build's files
// (the worker bundle is hashed as built, before the manifest is written into it).
const hash = createHash("sha256");
const sorted = [...assets.keys()].sort();
for (const name of sorted) hash.update(`${name}\0`).update(readFileSync(assets.get(name)));
const digest = hash.digest("hex").slice(0, 16);
const manifest = { hash: digest, assets: sorted, repoRoot: root };
for (const file of [bundle, workerBundle]) {
  const bundled = readFileSync(file, "utf8");
  if (bundled.split(manifestPlaceholder).length !== 2)
    throw new Error(`${file} must hold the manifest placeholder exactly once`);
  writeFileSync(
    file,
    bundled.replace(JSON.stringify(manifestPlaceholder), () => JSON.stringify(JSON.stringify(manifest))),
  );
}

const blob = join(work, "sea-prep.blob");
const seaConfig = join(work, "sea-config.json");
writeFileSync(
  seaConfig,
  JSON.stringify(
    {
      main: bundle,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      assets: Object.fromEntries(sorted.map((n) => [n, assets.get(n)])),
    },
    null,
    2,
  ),
);
quietly(process.execPath, ["--experimental-sea-config", seaConfig]);

mkdirSync(dirname(output), { recursive: true });
rmSync(output, { force: true });
copyFileSync(process.execPath, output);
chmodSync(output, 0o755);
quietly(process.execPath, [
  require.resolve("postject/dist/cli.js"),
  output,
  "NODE_SEA_BLOB",
  blob,
  "--sentinel-fuse",
  "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2",
]);

const mib = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
console.log(
  `${relative(process.cwd(), output) || output}: ${mib(statSync(output).size)} (bundle ${mib(statSync(bundle).size)}, ${sorted.length} assets ${mib(sorted.reduce((n, a) => n + statSync(assets.get(a)).size, 0))}), built in ${((Date.now() - started) / 1000).toFixed(1)} s`,
);
