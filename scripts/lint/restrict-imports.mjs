// An ESLint rule that forbids imports by package name and by where a relative
// import lands in the repository, so the dependency direction of the
// architecture can be written as data (see eslint.config.js).
//
// Why not ESLint's own `no-restricted-imports`: it matches the import string
// only (so "leaves protocol/" cannot be said for `../../x.js` at every depth),
// ignores `import()` and `import("x").T` types, and one file can have only one
// set of its options, where the architecture has several independent rules.
// This one resolves relative paths against the repository root, sees every
// form of import, and is registered once per architecture rule under its own
// name, so a violation names the rule it breaks.
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: every `paths`/`inside` folder below is relative to it. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * Whether a bare specifier falls under a package pattern: `"@zimchat/server"`
 * covers the package and its subpaths (`@zimchat/server/x`), `"@prisma/*"` a
 * whole scope, `"@zimchat/plugin-sdk/bot"` one subpath and below.
 */
function matchesPackage(specifier, pattern) {
  if (pattern.endsWith("/*")) return specifier.startsWith(pattern.slice(0, -1));
  return specifier === pattern || specifier.startsWith(`${pattern}/`);
}

/** Whether a repository-relative path lies in `folder` (or is it). */
function within(path, folder) {
  const clean = folder.replace(/\/+$/, "");
  return path === clean || path.startsWith(`${clean}/`);
}

/** The string an import-like node loads, or undefined when it is computed at run time. */
function sourceOf(node) {
  if (!node) return undefined;
  if (node.type === "Literal" && typeof node.value === "string") return node.value;
  if (node.type === "TemplateLiteral" && node.expressions.length === 0) return node.quasis[0].value.cooked;
  if (node.type === "TSLiteralType") return sourceOf(node.literal);
  return undefined;
}

const optionsSchema = {
  type: "object",
  properties: {
    packages: { type: "array", items: { type: "string" } },
    allowPackages: { type: "array", items: { type: "string" } },
    paths: { type: "array", items: { type: "string" } },
    inside: { type: "string" },
    message: { type: "string" },
  },
  required: ["message"],
  additionalProperties: false,
};

/**
 * The rule. Options (one object):
 * - `packages`: bare specifiers that may not be imported (patterns as in {@link matchesPackage});
 * - `allowPackages`: exceptions to `packages` (e.g. `@zimchat/protocol` out of `@zimchat/*`);
 * - `paths`: repository folders a relative import may not resolve into;
 * - `inside`: a folder every relative import must stay inside;
 * - `message`: the architecture rule, said to whoever breaks it.
 * @type {import("eslint").Rule.RuleModule}
 */
export const restrictImports = {
  meta: {
    type: "problem",
    docs: { description: "Forbid imports that break the dependency direction of the packages" },
    schema: [optionsSchema],
    messages: { forbidden: "'{{specifier}}' {{what}}: {{message}}" },
  },
  create(context) {
    const { packages = [], allowPackages = [], paths = [], inside, message } = context.options[0];
    const fromDir = dirname(context.physicalFilename);

    function check(node, sourceNode) {
      const specifier = sourceOf(sourceNode);
      if (specifier === undefined || specifier.startsWith("node:")) return;
      let what;
      if (specifier.startsWith(".") || isAbsolute(specifier)) {
        const target = relative(repoRoot, resolve(fromDir, specifier)).split(sep).join("/");
        const into = paths.find((folder) => within(target, folder));
        if (into !== undefined) what = `reaches into ${into}/`;
        else if (inside !== undefined && !within(target, inside)) what = `leaves ${inside}/`;
      } else if (
        packages.some((p) => matchesPackage(specifier, p)) &&
        !allowPackages.some((p) => matchesPackage(specifier, p))
      ) {
        what = "is not allowed here";
      }
      if (what !== undefined) context.report({ node, messageId: "forbidden", data: { specifier, what, message } });
    }

    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source),
      TSImportType: (node) => check(node, node.source ?? node.argument),
      TSExternalModuleReference: (node) => check(node, node.expression),
      CallExpression(node) {
        if (node.callee.type === "Identifier" && node.callee.name === "require" && node.arguments.length === 1)
          check(node, node.arguments[0]);
      },
    };
  },
};

/**
 * An ESLint plugin whose rules are the given architecture rules, each one
 * the {@link restrictImports} rule under its own name.
 * @param {string[]} names
 * @returns {import("eslint").ESLint.Plugin}
 */
export function layeringPlugin(names) {
  return { meta: { name: "layering" }, rules: Object.fromEntries(names.map((name) => [name, restrictImports])) };
}
