// The layering rules of eslint.config.js must bite: each case lints an
// in-memory file at a path in the repository with the real configuration and
// expects the named rule to fire (or, for the allowed neighbours, to stay
// quiet). A rule that cannot fail would let the architecture erode unnoticed.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ESLint } from "eslint";
import { repoRoot } from "./restrict-imports.mjs";

const eslint = new ESLint({ cwd: repoRoot });

/** The `layering/...` rules that fire on `code` as if it were the file at `path`. */
async function layeringRules(path, code) {
  const [result] = await eslint.lintText(code, { filePath: `${repoRoot}/${path}` });
  assert.ok(result, `${path} is linted`);
  const fatal = result.messages.filter((m) => m.fatal);
  assert.deepEqual(fatal, [], `${path} parses`);
  return result.messages
    .filter((m) => m.ruleId?.startsWith("layering/"))
    .map((m) => m.ruleId.slice("layering/".length));
}

/** [path, code, the rules expected to fire (empty: allowed)] */
const cases = [
  // protocol imports nothing of ours
  ["protocol/src/schemas.ts", `import { ZimClient } from "@zimchat/client";`, ["protocol-imports-nothing-of-ours"]],
  ["protocol/src/schemas.ts", `export * from "@zimchat/server";`, ["protocol-imports-nothing-of-ours"]],
  ["protocol/src/schemas.ts", `import { x } from "../../server/src/index.js";`, ["cross-package-imports-by-name"]],
  [
    "protocol/src/schemas.ts",
    `import { z } from "zod";\nimport { limits } from "./limits.js";\nimport { b } from "../test/b.js";`,
    [],
  ],

  // the client never imports the server, the plugin SDK or the test helpers
  ["client/src/outbox.ts", `import { createApp } from "@zimchat/server";`, ["client-imports-only-protocol"]],
  [
    "client/src/outbox.ts",
    `import type { HookName } from "@zimchat/plugin-sdk/server";`,
    ["client-imports-only-protocol"],
  ],
  ["client/src/outbox.ts", `const { createApp } = await import("@zimchat/server");`, ["client-imports-only-protocol"]],
  ["client/src/outbox.ts", `type App = import("@zimchat/server").Homeserver;`, ["client-imports-only-protocol"]],
  ["client/src/outbox.ts", `import { startTestServer } from "@zimchat/testing";`, ["client-imports-only-protocol"]],
  [
    "client/src/outbox.ts",
    `import { openDatabase } from "../../server/src/db/database.js";`,
    ["cross-package-imports-by-name"],
  ],
  [
    "client/src/outbox.ts",
    `import { Envelope } from "@zimchat/protocol";\nimport { ApiError } from "./errors.js";`,
    [],
  ],
  ["client/test/outbox.test.ts", `import { startTestServer } from "@zimchat/testing";`, []],
  ["client/test/outbox.test.ts", `import { createApp } from "@zimchat/server";`, ["client-imports-only-protocol"]],

  // only the Signal backend calls libsignal in the client
  [
    "client/src/outbox.ts",
    `import { PrivateKey } from "@signalapp/libsignal-client";`,
    ["only-the-signal-backend-imports-libsignal"],
  ],
  [
    "client/src/store/sqlite-store.ts",
    `import * as Signal from "@signalapp/libsignal-client";`,
    ["only-the-signal-backend-imports-libsignal"],
  ],
  ["client/src/signal/backend.ts", `import { PrivateKey } from "@signalapp/libsignal-client";`, []],
  ["client/test/sessions.test.ts", `import { PrivateKey } from "@signalapp/libsignal-client";`, []],

  // the server never imports the client, the bot framework or the test helpers
  [
    "server/src/services/mailbox.ts",
    `import { ZimClient } from "@zimchat/client";`,
    ["server-never-imports-client-bot-or-testing"],
  ],
  [
    "server/src/app.ts",
    `import { Bot } from "@zimchat/plugin-sdk/bot";`,
    ["server-never-imports-client-bot-or-testing"],
  ],
  [
    "server/src/app.ts",
    `import { startTestServer } from "@zimchat/testing";`,
    ["server-never-imports-client-bot-or-testing"],
  ],
  [
    "server/src/app.ts",
    `import type { HookName } from "@zimchat/plugin-sdk/server";\nimport { limits } from "@zimchat/protocol";`,
    [],
  ],
  ["server/test/integ/send.test.ts", `import { startTestServer } from "@zimchat/testing";`, []],

  // only the stores (and the database setup) use Prisma
  ["server/src/services/mailbox.ts", `import { Prisma } from "@prisma/client";`, ["only-stores-import-prisma"]],
  [
    "server/src/services/mailbox.ts",
    `import { Prisma } from "../generated/prisma-sqlite/client.js";`,
    ["only-stores-import-prisma"],
  ],
  [
    "server/src/http/routes.ts",
    `import type { PrismaClient } from "../generated/prisma-postgresql/client.js";`,
    ["only-stores-import-prisma"],
  ],
  ["client/src/store/sqlite-store.ts", `import { PrismaClient } from "@prisma/client";`, ["only-stores-import-prisma"]],
  ["server/src/stores/key-store.ts", `import { Prisma } from "../generated/prisma-sqlite/client.js";`, []],
  ["server/src/db/database.ts", `import { PrismaPg } from "@prisma/adapter-pg";`, []],

  // the server plugin API depends on the protocol only
  [
    "plugin-sdk/src/server/index.ts",
    `import { ZimClient } from "@zimchat/client";`,
    ["plugin-sdk-server-imports-only-protocol"],
  ],
  [
    "plugin-sdk/src/server/index.ts",
    `import { MemoryLogger } from "../bot/index.js";`,
    ["plugin-sdk-server-imports-only-protocol"],
  ],
  [
    "plugin-sdk/src/server/index.ts",
    `import type { Envelope } from "@zimchat/protocol";\nimport { x } from "./hooks.js";`,
    [],
  ],

  // the bot framework builds on the client; published packages never depend on the server
  [
    "plugin-sdk/src/bot/bot.ts",
    `import { createApp } from "@zimchat/server";`,
    ["bot-framework-builds-on-the-client", "published-packages-never-import-the-server"],
  ],
  ["plugin-sdk/src/bot/bot.ts", `import { ZimClient } from "@zimchat/client";`, []],
  [
    "plugin-sdk/src/bot/bot.ts",
    `import { PrivateKey } from "@signalapp/libsignal-client";`,
    ["bots-reach-libsignal-through-the-client"],
  ],

  // plugins see the server only through the plugin API
  [
    "plugins/src/moderation/index.ts",
    `import { createApp } from "@zimchat/server";`,
    ["plugins-use-only-the-plugin-api"],
  ],
  [
    "plugins/src/moderation/index.ts",
    `import { ZimClient } from "@zimchat/client";`,
    ["plugins-use-only-the-plugin-api"],
  ],
  [
    "plugins/src/moderation/index.ts",
    `import { x } from "../../../server/src/plugins/host.js";`,
    ["cross-package-imports-by-name"],
  ],
  ["plugins/src/moderation/index.ts", `import type { ServerPlugin } from "@zimchat/plugin-sdk/server";`, []],
  [
    "plugins/test/moderation.test.ts",
    `import { PluginHost } from "@zimchat/server/dist/src/plugins/host.js";`,
    ["plugins-use-only-the-plugin-api"],
  ],

  // a bridge is a bot: the bot framework and the client, never the server, the plugin API or libsignal
  ["bridge/src/bridge.ts", `import { Bot } from "@zimchat/plugin-sdk/bot";`, []],
  ["bridge/src/bridge.ts", `import { bridgeBanner } from "@zimchat/client";`, []],
  ["bridge/src/bridge.ts", `import { createApp } from "@zimchat/server";`, ["bridges-are-bots"]],
  ["bridge/src/bridge.ts", `import { definePlugin } from "@zimchat/plugin-sdk/server";`, ["bridges-are-bots"]],
  ["bridge/src/bridge.ts", `import { testHomeserver } from "@zimchat/testing";`, ["bridges-are-bots"]],
  ["bridge/src/bridge.ts", `import { PrivateKey } from "@signalapp/libsignal-client";`, ["bridges-are-bots"]],
  ["bridge/test/irc-bridge.test.ts", `import { testHomeserver } from "@zimchat/testing";`, []],
  ["bridge/test/irc-bridge.test.ts", `import { createApp } from "@zimchat/server";`, ["bridges-are-bots"]],
];

describe("layering rules of eslint.config.js", () => {
  for (const [path, code, expected] of cases) {
    const label = expected.length ? `${expected.join(" + ")} fires` : "allowed";
    test(`${path}: ${code.split("\n")[0]} (${label})`, async () => {
      assert.deepEqual((await layeringRules(path, code)).sort(), [...expected].sort());
    });
  }

  test("a violation's message names the import and says which way the dependency must go", async () => {
    const [result] = await eslint.lintText(`import { createApp } from "@zimchat/server";\n`, {
      filePath: `${repoRoot}/client/src/outbox.ts`,
    });
    const message = result.messages.find((m) => m.ruleId === "layering/client-imports-only-protocol");
    assert.ok(message);
    assert.match(
      message.message,
      /^'@zimchat\/server' is not allowed here: the client SDK builds on @zimchat\/protocol only/,
    );
  });
});
