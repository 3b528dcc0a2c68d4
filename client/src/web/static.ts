import { readFile, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** Where the built browser UI lives: `dist/web/` of this package (index.html, app.js, app.css). */
export const defaultWebAssetsDir = fileURLToPath(new URL("../../web/", import.meta.url));

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/** Shown when the UI has not been built: no script, nothing inline (the CSP allows neither). */
const placeholder = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ZimChat</title></head>
<body>
<h1>ZimChat web client</h1>
<p>The daemon is running, but the browser UI has not been built into this package (dist/web/index.html is missing).
Build it with <code>npm run build</code> in the ZimChat repository, then reload this page.</p>
</body>
</html>
`;

/** A static file to send. */
export interface StaticFile {
  body: Buffer;
  contentType: string;
}

/**
 * The file a URL path names under `dir` (`/` is index.html), or null when
 * there is none (or the path leaves `dir`, or names a dot file). A missing
 * index.html is a placeholder page that says to build the UI.
 */
export async function staticFile(dir: string, urlPath: string): Promise<StaticFile | null> {
  let path: string;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (path.includes("\0")) return null;
  const relative = path === "/" ? "index.html" : path.replace(/^\/+/, "");
  if (relative.split("/").some((part) => part.startsWith("."))) return null;
  const root = resolve(dir);
  const file = resolve(join(root, relative));
  if (!file.startsWith(root + sep)) return null;
  try {
    const info = await stat(file);
    if (!info.isFile()) return null;
    return {
      body: await readFile(file),
      contentType: contentTypes[extname(file).toLowerCase()] ?? "application/octet-stream",
    };
  } catch {
    if (relative === "index.html") return { body: Buffer.from(placeholder), contentType: contentTypes[".html"]! };
    return null;
  }
}
