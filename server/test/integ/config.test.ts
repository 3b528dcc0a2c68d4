import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { configReference } from "../../src/config-options.js";
import { startChildServer } from "../support/child-server.js";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));
const configurationDoc = fileURLToPath(new URL("../../../../docs/configuration.md", import.meta.url));

/** Runs `zimchat <args>` to its end. */
function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { env: { ...process.env, DATABASE_URL: "", ...env }, timeout: 20_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("configuration through the real CLI", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "zimchat-config-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("refuses an unknown config-file key, naming it, before touching the data dir", async () => {
    const file = join(dir, "unknown.json");
    writeFileSync(file, JSON.stringify({ port: 0, attachmentMaxMb: 5 }));
    const result = await run(["serve", "--config", file, "--data-dir", join(dir, "data-unknown")]);
    assert.notEqual(result.code, 0);
    assert.equal(
      result.stderr.trim(),
      `zimchat: invalid configuration: config file ${file}: unknown key "attachmentMaxMb" (see \`zimchat config reference\`)`,
    );
    assert.ok(!existsSync(join(dir, "data-unknown")), "nothing was created");
  });

  it("refuses a bad environment value, a bad flag and a bad file value, naming the option and where it came from", async () => {
    const env = await run(["serve", "--data-dir", join(dir, "data-env")], { ZIMCHAT_ATTACHMENT_MAX_MIB: "lots" });
    assert.notEqual(env.code, 0);
    assert.equal(
      env.stderr.trim(),
      "zimchat: invalid configuration: attachmentMaxMib (env ZIMCHAT_ATTACHMENT_MAX_MIB): expected a whole number",
    );

    const flag = await run(["serve", "--data-dir", join(dir, "data-flag"), "--registration", "sometimes"]);
    assert.notEqual(flag.code, 0);
    assert.equal(
      flag.stderr.trim(),
      "zimchat: invalid configuration: registration (flag --registration): expected open, invite or closed",
    );

    const file = join(dir, "bad-value.json");
    writeFileSync(file, JSON.stringify({ envelopeTtlDays: 1.5 }));
    const fromFile = await run(["serve", "--config", file, "--data-dir", join(dir, "data-file")]);
    assert.notEqual(fromFile.code, 0);
    assert.equal(
      fromFile.stderr.trim(),
      `zimchat: invalid configuration: envelopeTtlDays (file ${file}): expected a whole number`,
    );

    // A value each parser accepts but the whole config refuses still names the option.
    const range = await run(["serve", "--data-dir", join(dir, "data-range"), "--max-devices", "500"]);
    assert.notEqual(range.code, 0);
    assert.match(range.stderr, /^zimchat: invalid configuration: maxDevicesPerAccount 500 is not 1\.\.127/);
  });

  it("takes pinned --federation-allow entries, and refuses a malformed fingerprint at start-up, naming the entry", async () => {
    const pin = `sha256:${"ab".repeat(32)}`;
    const checked = await run([
      "config",
      "check",
      "--data-dir",
      join(dir, "data-pins"),
      "--federation",
      "allowlist",
      "--federation-allow",
      `club.example=${pin}, news.example:8443`,
    ]);
    assert.equal(checked.code, 0, checked.stderr);
    const { config } = JSON.parse(checked.stdout) as { config: Record<string, unknown> };
    assert.deepEqual(config.federationAllow, ["club.example", "news.example:8443"]);
    assert.deepEqual(config.federationPins, { "club.example": pin });

    for (const bad of [`sha256:${"AB".repeat(32)}`, `sha256:${"ab".repeat(31)}`, "ab".repeat(32), `${pin}=x`]) {
      const data = join(dir, "data-bad-pin");
      const refused = await run(["serve", "--data-dir", data], {
        ZIMCHAT_FEDERATION: "allowlist",
        ZIMCHAT_FEDERATION_ALLOW: `news.example,club.example=${bad}`,
      });
      assert.notEqual(refused.code, 0, bad);
      assert.equal(
        refused.stderr.trim(),
        "zimchat: invalid configuration: federationAllow (env ZIMCHAT_FEDERATION_ALLOW): the pin of club.example is not a fingerprint: expected club.example=sha256: and 64 lowercase hex digits, as `zimchat federation-identity` prints on that server",
        bad,
      );
      assert.equal(existsSync(data), false, "nothing was created");
    }
    const twice = await run(["serve", "--data-dir", join(dir, "data-twice")], {
      ZIMCHAT_FEDERATION_ALLOW: `club.example=${pin},club.example`,
    });
    assert.notEqual(twice.code, 0);
    assert.equal(
      twice.stderr.trim(),
      "zimchat: invalid configuration: federationAllow (env ZIMCHAT_FEDERATION_ALLOW): club.example is listed twice with different pins: keep one entry",
    );
  });

  it("takes a flag over the environment over the file over the default, in a running server", async () => {
    const file = join(dir, "precedence.json");
    writeFileSync(
      file,
      JSON.stringify({ serverName: "file.example", registration: "closed", metrics: "off", logLevel: "info" }),
    );
    const server = await startChildServer(
      ["--data-dir", join(dir, "data-run"), "--config", file, "--registration", "open"],
      {
        DATABASE_URL: "",
        ZIMCHAT_SERVER_NAME: "env.example",
        ZIMCHAT_REGISTRATION: "invite",
      },
    );
    try {
      const listening = JSON.parse(server.logs.find((l) => l.includes('"msg":"listening"'))!) as {
        serverName: string;
        registration: string;
      };
      assert.equal(listening.serverName, "env.example", "env over file");
      assert.equal(listening.registration, "open", "flag over env and file");
      assert.equal((await fetch(`${server.url}/metrics`)).status, 404, "file over default (metrics on)");
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });

  it("config check prints the effective config with sources, secrets redacted", async () => {
    const file = join(dir, "secrets.json");
    const token = "metrics-secret-token-0123456789";
    writeFileSync(
      file,
      JSON.stringify({
        metricsToken: token,
        redisUrl: "redis://:redis-password-xyz@127.0.0.1:6379",
        databaseUrl: "postgresql://zimchat:pg-password-xyz@127.0.0.1:5432/zimchat",
        attachmentMaxMib: 7,
      }),
    );
    const adminFile = join(dir, "admin-token");
    writeFileSync(adminFile, "admin-secret-token-0123456789\n");
    const result = await run(["config", "check", "--config", file, "--data-dir", join(dir, "data-check")], {
      ZIMCHAT_ADMIN_TOKEN: "admin-token-from-the-variable",
      ZIMCHAT_ADMIN_TOKEN_FILE: adminFile,
      ZIMCHAT_METRICS: "off",
    });
    assert.equal(result.code, 0, result.stderr);
    for (const secret of [
      token,
      "redis-password-xyz",
      "pg-password-xyz",
      "admin-secret-token-0123456789",
      "admin-token-from-the-variable",
    ])
      assert.ok(!result.stdout.includes(secret), `printed ${secret}`);
    const { config, sources } = JSON.parse(result.stdout) as {
      config: Record<string, unknown>;
      sources: Record<string, string>;
    };
    assert.equal(config.metricsToken, "<redacted>");
    assert.equal(config.adminToken, "<redacted>");
    assert.equal(config.redisUrl, "redis://:redacted@127.0.0.1:6379");
    assert.equal(config.databaseUrl, "postgresql://zimchat:redacted@127.0.0.1:5432/zimchat");
    assert.equal(config.attachmentMaxBytes, 7 * 1024 * 1024);
    assert.equal(config.metrics, false);
    assert.equal(sources.attachmentMaxMib, `file ${file}`);
    assert.equal(sources.metrics, "env ZIMCHAT_METRICS");
    assert.equal(sources.dataDir, "flag --data-dir");
    assert.equal(sources.redisPrefix, "default");
    assert.equal(sources.adminToken, "env ZIMCHAT_ADMIN_TOKEN_FILE", "the _FILE variable wins over the variable");

    const missing = await run(["config", "check", "--data-dir", join(dir, "data-check")], {
      ZIMCHAT_METRICS_TOKEN_FILE: join(dir, "no-such-file"),
    });
    assert.notEqual(missing.code, 0);
    assert.equal(
      missing.stderr.trim(),
      `zimchat: invalid configuration: metricsToken (env ZIMCHAT_METRICS_TOKEN_FILE): cannot read ${join(dir, "no-such-file")}: ENOENT`,
    );
  });

  it("the configuration table in docs/configuration.md is the generated reference, and `zimchat config reference` prints it", async () => {
    const text = readFileSync(configurationDoc, "utf8");
    const match = /<!-- config-reference:start -->\n([\s\S]*?)<!-- config-reference:end -->/.exec(text);
    assert.ok(match, "docs/configuration.md has the config-reference markers");
    assert.equal(
      match[1]!.trim(),
      configReference(),
      "docs/configuration.md is stale: paste the output of `zimchat config reference` between the markers",
    );
    const printed = await run(["config", "reference"]);
    assert.equal(printed.stdout.trim(), configReference());
  });
});
