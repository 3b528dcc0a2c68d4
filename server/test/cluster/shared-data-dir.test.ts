import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));
const run = promisify(execFile);

describe("nodes starting at once on one shared data directory", () => {
  it("create one trust root and one server certificate between them", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "zimchat-shared-"));
    try {
      const outputs = await Promise.all(
        Array.from({ length: 6 }, () => run(process.execPath, [bin, "keys", "init", "--data-dir", dataDir, "--json"])),
      );
      const roots = outputs.map(({ stdout }) => (JSON.parse(stdout) as { fingerprint: string }).fingerprint);
      assert.equal(new Set(roots).size, 1, `trust roots: ${roots.join(" | ")}`);
      assert.deepEqual(readdirSync(join(dataDir, "keys")).sort(), [
        "server.crt",
        "server.key",
        "trust-root.key",
        "trust-root.pub",
      ]);
      const again = await run(process.execPath, [bin, "keys", "init", "--data-dir", dataDir, "--json"]);
      assert.equal((JSON.parse(again.stdout) as { fingerprint: string }).fingerprint, roots[0]);
      assert.deepEqual(readdirSync(join(dataDir, "keys")).sort(), [
        "server.crt",
        "server.key",
        "trust-root.key",
        "trust-root.pub",
      ]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
