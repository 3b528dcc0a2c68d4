// The browser UI of `zimchat-chat web` (client/web/): esbuild bundles
// client/web/src/main.tsx (Preact, JSX) into client/dist/web/app.js and
// client/web/app.css into app.css, and copies index.html beside them; the local
// daemon serves that folder. Type-checking is tsc's job (client/web/tsconfig.json
// is one of the projects of `tsc -b`); esbuild only strips the types.
// Run by scripts/build.mjs after tsc; `node scripts/build-web-ui.mjs` alone rebuilds just the UI.
import { copyFileSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Builds client/dist/web from client/web; returns the files written with their sizes in bytes. */
export async function buildWebUi() {
  const source = join(root, "client/web");
  const out = join(root, "client/dist/web");
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: { app: join(source, "src/main.tsx"), "app-style": join(source, "app.css") },
    outdir: out,
    entryNames: "[name]",
    bundle: true,
    format: "esm",
    // What the Chromium of Debian stable and current Firefox and Safari run; no polyfills.
    target: ["es2022", "chrome120", "firefox120", "safari16"],
    jsx: "automatic",
    jsxImportSource: "preact",
    minify: true,
    legalComments: "linked",
    metafile: true,
    logLevel: "warning",
  });
  // esbuild names a CSS entry after its key; the page links app.css.
  renameSync(join(out, "app-style.css"), join(out, "app.css"));
  copyFileSync(join(source, "index.html"), join(out, "index.html"));
  const written = Object.entries(result.metafile.outputs).map(([file, { bytes }]) => ({
    file: file.replace(/app-style\.css$/, "app.css"),
    bytes,
  }));
  return [...written, { file: "client/dist/web/index.html", bytes: statSync(join(out, "index.html")).size }];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const { file, bytes } of await buildWebUi()) console.log(`${file} ${bytes} bytes`);
}
