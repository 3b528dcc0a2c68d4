// The runtime half of the single-file binary (scripts/build-binary.mjs):
// esbuild bundles this module into the binary, and the build rewrites every
// `import.meta.url` / `import.meta.dirname`, every native-addon loader
// (`bindings`, `node-gyp-build`) and every non-literal `import(x)` of the
// bundled code into calls of the functions below.
//
// One mechanism locates files: the files code reads beside itself (the SQL
// migrations, package.json) and the native addons travel as SEA assets named
// by their path in the repository. Inside the binary they are written once
// to a cache directory, `$XDG_CACHE_HOME/zimchat/<content hash>/<repo path>`
// (default ~/.cache), and each module's `import.meta.url` points at its own
// repo path under that root, so `new URL("../x", import.meta.url)` finds the
// same file it finds in the repository. Run as a plain bundle (no SEA), the
// root is the repository the binary was built from.
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import vm from "node:vm";
import { bundledModules, manifest } from "zimchat:binary-manifest";

// The SEA main script's own `require` only loads built-in modules: native
// addons and plugin files on disk go through a full one.
const nodeRequire = createRequire(process.execPath);

let root;

function isSea() {
  try {
    return nodeRequire("node:sea").isSea();
  } catch {
    return false;
  }
}

/** Where the carried files live: the cache directory inside the binary, the repository outside it. */
function assetRoot() {
  if (root !== undefined) return root;
  if (!isSea()) return (root = manifest.repoRoot);
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  const dir = join(cache, "zimchat", manifest.hash);
  if (!existsSync(join(dir, ".complete"))) {
    try {
      extract(dir);
    } catch (error) {
      throw new Error(
        `cannot write the binary's native libraries and migrations to ${dir} (${error.code ?? error.message}): set XDG_CACHE_HOME to a writable directory`,
        { cause: error },
      );
    }
  }
  return (root = dir);
}

/** Writes every asset into a fresh directory and renames it into place, so a crash leaves no half-written root. */
function extract(dir) {
  const { getRawAsset } = nodeRequire("node:sea");
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  const staging = `${dir}.${process.pid}.tmp`;
  rmSync(staging, { recursive: true, force: true });
  for (const name of manifest.assets) {
    const target = join(staging, name);
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
    writeFileSync(target, new Uint8Array(getRawAsset(name)), { mode: name.endsWith(".node") ? 0o700 : 0o600 });
  }
  writeFileSync(join(staging, ".complete"), `${manifest.hash}\n`, { mode: 0o600 });
  chmodSync(staging, 0o700);
  try {
    renameSync(staging, dir);
  } catch (error) {
    // Another process started at the same time and won the rename: its copy is identical.
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(join(dir, ".complete"))) throw error;
  }
}

/** `import.meta.url` of the module whose repository path is `path`. */
export function moduleUrl(path) {
  return pathToFileURL(join(assetRoot(), path)).href;
}

/** `import.meta.dirname` of the module whose repository path is `path`. */
export function moduleDirname(path) {
  return dirname(join(assetRoot(), path));
}

/** Loads a native addon carried at repository path `path`. */
export function requireAddon(path) {
  return nodeRequire(join(assetRoot(), path));
}

// `import()` in the SEA main script has no module loader on Node 20; a
// vm.Script with the main context's default loader has one, so modules on
// disk (third-party plugins) still load.
let diskImport;

/** `import(specifier)` for specifiers only known at run time: bundled modules first, then the disk. */
export function dynamicImport(specifier) {
  const bundled = bundledModules[specifier];
  if (bundled) return bundled();
  diskImport ??= withoutLoaderWarning(() =>
    new vm.Script("(specifier) => import(specifier)", {
      filename: join(process.cwd(), "zimchat-binary-import.js"),
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    }).runInThisContext(),
  );
  return withoutLoaderWarning(() => diskImport(specifier));
}

/**
 * Runs `make` without Node's "USE_MAIN_CONTEXT_DEFAULT_LOADER is experimental" warning: the binary is built for one
 * Node version.
 */
function withoutLoaderWarning(make) {
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning, ...rest) => {
    if (!String(warning?.message ?? warning).includes("USE_MAIN_CONTEXT_DEFAULT_LOADER"))
      emitWarning.call(process, warning, ...rest);
  };
  try {
    return make();
  } finally {
    process.emitWarning = emitWarning;
  }
}
