// ESLint for the whole repository: typescript-eslint's recommended rules, a
// line-length limit Prettier cannot keep by itself, and the packages'
// dependency direction (see the architecture docs) as import rules.
// `npm run lint` runs it with `prettier --check`, and `npm test` runs that first.
import js from "@eslint/js";
import stylistic from "@stylistic/eslint-plugin";
import prettier from "eslint-config-prettier/flat";
import globals from "globals";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";
import { layeringPlugin } from "./scripts/lint/restrict-imports.mjs";

const workspaces = ["protocol", "client", "plugin-sdk", "server", "plugins", "bridge", "examples", "bench", "testing"];

/**
 * The dependency direction, one way only:
 *   protocol <- client <- plugin-sdk/bot <- examples, bridge
 *   protocol <- plugin-sdk/server <- plugins, server
 *   server, client <- testing <- tests, bench
 * Each entry is one architecture rule: the files it governs, what they may not
 * import (`packages` by name; `paths` and `inside` for relative imports,
 * resolved against the repository root) and the message a violation prints.
 * The same rule name may appear twice for different files (a later entry
 * replaces an earlier one's options for the files both match).
 */
const layering = [
  ...workspaces.map((dir) => ({
    rule: "cross-package-imports-by-name",
    files: [`${dir}/**`],
    inside: dir,
    message: `code in ${dir}/ reaches another package through its name (@zimchat/...), which goes through its public entry point and its package.json dependencies, never through a relative path into its folder`,
  })),
  {
    rule: "protocol-imports-nothing-of-ours",
    files: ["protocol/**"],
    packages: ["@zimchat/*"],
    message:
      "protocol/ is the wire contract at the bottom of the graph and imports no other ZimChat package; move what it needs into protocol/",
  },
  {
    rule: "client-imports-only-protocol",
    files: ["client/**"],
    packages: ["@zimchat/*"],
    allowPackages: ["@zimchat/protocol"],
    message:
      "the client SDK builds on @zimchat/protocol only; it never imports the server, the plugin SDK or the test helpers (it is published and installs without them)",
  },
  {
    rule: "client-imports-only-protocol",
    files: ["client/test/**"],
    packages: ["@zimchat/*"],
    allowPackages: ["@zimchat/protocol", "@zimchat/testing"],
    message:
      "client tests use @zimchat/protocol and the test helpers of @zimchat/testing; they reach the server over the network (a spawned homeserver), never by importing it",
  },
  {
    rule: "only-the-signal-backend-imports-libsignal",
    files: ["client/src/**"],
    ignores: ["client/src/signal/**"],
    packages: ["@signalapp/libsignal-client"],
    message:
      "in the client only the Signal backend (client/src/signal/) calls libsignal; go through its interface instead",
  },
  {
    rule: "server-never-imports-client-bot-or-testing",
    files: ["server/src/**"],
    packages: ["@zimchat/client", "@zimchat/plugin-sdk/bot", "@zimchat/testing"],
    message:
      "the server depends on @zimchat/protocol and @zimchat/plugin-sdk/server only: it never imports the client SDK, the bot framework or the test helpers",
  },
  {
    rule: "only-stores-import-prisma",
    files: ["**/*"],
    ignores: [
      "server/src/stores/**", // the stores hold every Prisma call
      "server/src/db/**", // opens the Prisma client on SQLite or PostgreSQL for the stores
      "server/src/generated/**", // the generated Prisma clients themselves
      "server/scripts/**", // build-time tooling: generates the clients, writes migrations
      "server/test/db/**", // tests of the database layer write raw statements as that layer does
    ],
    packages: ["@prisma/*", "prisma"],
    paths: ["server/src/generated"],
    message:
      "only server/src/stores/ (and the database setup in server/src/db/) use Prisma; everything above a store calls the store",
  },
  {
    rule: "plugin-sdk-server-imports-only-protocol",
    files: ["plugin-sdk/src/server/**"],
    packages: ["@zimchat/*"],
    allowPackages: ["@zimchat/protocol"],
    inside: "plugin-sdk/src/server",
    message:
      "the server plugin API (@zimchat/plugin-sdk/server) depends on @zimchat/protocol only, so the server and plugins can use it without pulling in the client or the bot framework",
  },
  {
    rule: "bot-framework-builds-on-the-client",
    files: ["plugin-sdk/src/bot/**"],
    packages: ["@zimchat/*"],
    allowPackages: ["@zimchat/protocol", "@zimchat/client"],
    paths: ["plugin-sdk/src/server"],
    message:
      "the bot framework builds on @zimchat/client and @zimchat/protocol only (it is published and installs without the server)",
  },
  {
    rule: "bots-reach-libsignal-through-the-client",
    files: ["plugin-sdk/src/**"],
    packages: ["@signalapp/libsignal-client"],
    message:
      "the bot framework uses the client's API (safety numbers, fingerprints, verification); only the client's Signal backend (client/src/signal/) calls libsignal",
  },
  {
    rule: "published-packages-never-import-the-server",
    files: ["plugin-sdk/src/**"],
    packages: ["@zimchat/server", "@zimchat/testing"],
    message:
      "@zimchat/plugin-sdk is published and installs outside this repository, so it never depends on the server or on the test helpers",
  },
  {
    rule: "bridges-are-bots",
    files: ["bridge/src/**"],
    packages: ["@zimchat/*", "@signalapp/libsignal-client"],
    allowPackages: ["@zimchat/protocol", "@zimchat/client", "@zimchat/plugin-sdk/bot"],
    message:
      "a bridge is a bot: it builds on @zimchat/plugin-sdk/bot and @zimchat/client (and @zimchat/protocol), never on the server, the server plugin API, the test helpers or libsignal directly",
  },
  {
    rule: "bridges-are-bots",
    files: ["bridge/test/**"],
    packages: ["@zimchat/server", "@zimchat/server/*", "@zimchat/plugin-sdk/server", "@signalapp/libsignal-client"],
    message:
      "bridge tests run a homeserver through @zimchat/testing and drive the bridge as its users would; they never import the server or libsignal",
  },
  {
    rule: "plugins-use-only-the-plugin-api",
    files: ["plugins/src/**"],
    packages: ["@zimchat/*"],
    allowPackages: ["@zimchat/protocol", "@zimchat/plugin-sdk/server"],
    message:
      "a server plugin sees the server only through @zimchat/plugin-sdk/server (and the wire types of @zimchat/protocol); it never imports the server's or the client's code",
  },
  {
    rule: "plugins-use-only-the-plugin-api",
    files: ["plugins/test/**"],
    packages: ["@zimchat/server/*", "@zimchat/client/*", "@zimchat/plugin-sdk/bot"],
    message:
      "plugin tests drive the server and the client through their public entry points (or @zimchat/testing), never through their internals",
  },
];

export default defineConfig(
  {
    ignores: ["**/dist/", "**/generated/", "**/node_modules/", "**/*.d.ts", "prisma/migrations/"].concat(
      // What .gitignore keeps out of the repository: caches, local data, bench scratch files.
      [".cache/", "data/", ".bench-tmp/", "*-bot-data/", "*bridge-data/"],
    ),
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: "module", globals: { ...globals.node } },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      // tsc's noUnusedLocals/noUnusedParameters already fail the build on these in .ts; this adds the .js/.mjs files
      // and catches unused catch bindings. A leading underscore marks a parameter kept for its position.
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_", ignoreRestSiblings: true },
      ],
      // A terminal chat and its tests strip and match control characters (ANSI escapes, C0 codes) on purpose.
      "no-control-regex": "off",
    },
  },
  {
    // The web client's UI runs in the browser (the daemon that serves it is Node, in client/src/web/).
    files: ["client/web/**"],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // Tests send malformed bodies and poke at private state on purpose; `any` is how they get past the types.
    files: ["**/test/**"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
  prettier,
  {
    // After eslint-config-prettier (which turns formatting rules off). Prettier wraps code but never a comment, a
    // string or a template literal. Comments count: prose can always be rewrapped. A line holding a string or
    // template literal is exempt: Prettier has already put the literal on a line of its own when it is the long
    // part, and a log line, error message or test name split across `+` can no longer be found with grep.
    plugins: { "@stylistic": stylistic },
    rules: {
      "@stylistic/max-len": [
        "error",
        {
          code: 120,
          tabWidth: 2,
          ignoreUrls: true,
          ignoreRegExpLiterals: true,
          ignoreStrings: true,
          ignoreTemplateLiterals: true,
          ignoreComments: false,
        },
      ],
    },
  },
  { plugins: { layering: layeringPlugin([...new Set(layering.map((l) => l.rule))]) } },
  ...layering.map(({ rule, files, ignores, ...options }) => ({
    files,
    ...(ignores ? { ignores } : {}),
    rules: { [`layering/${rule}`]: ["error", options] },
  })),
);
