/** The bridge's config file: the shipped examples load, secrets come from the environment, mistakes are named. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { BridgeConfigFileError, loadBridgeConfig, secretEnv } from "../src/index.js";

const examples = fileURLToPath(new URL("../../../examples/bridge/", import.meta.url));

describe("bridge config files", () => {
  it("the IRC example loads, with its directory resolved against the file and the SASL password from the environment", () => {
    const config = loadBridgeConfig(join(examples, "irc.yaml"), "irc", {});
    assert.equal(config.network, "irc");
    assert.ok(config.network === "irc");
    assert.equal(config.zimchat.dir, fileURLToPath(new URL("../../../ircbridge-data", import.meta.url)));
    assert.equal(config.irc.nick, "zimbridge");
    assert.deepEqual(config.irc.channels, ["#club"]);
    assert.equal(config.irc.maxLines, 5);
    assert.equal(config.irc.longMessages, "truncate");
    assert.deepEqual(config.irc.pacing, { burst: 4, intervalMs: 1000 });
    assert.equal(config.irc.puppets.enabled, false);
  });

  it("the XMPP example loads; the component secret and the invite come from the environment", () => {
    const config = loadBridgeConfig(join(examples, "xmpp.yaml"), "xmpp", {
      [secretEnv.xmppSecret]: "from-env",
      [secretEnv.invite]: "invite-from-env",
    });
    assert.ok(config.network === "xmpp");
    assert.equal(config.xmpp.secret, "from-env");
    assert.equal(config.zimchat.inviteToken, "invite-from-env");
    assert.equal(config.xmpp.mucDomain, "conference.example.org");
  });

  it("defaults fill what a minimal file leaves out, and the SASL password can come from the environment", () => {
    const dir = mkdtempSync(join(tmpdir(), "bridge-config-"));
    const file = join(dir, "b.json");
    writeFileSync(
      file,
      JSON.stringify({ zimchat: { dir: "data" }, irc: { host: "irc.test", sasl: { account: "z", password: "x" } } }),
    );
    const config = loadBridgeConfig(file, "irc", { [secretEnv.ircSaslPassword]: "env-pw" });
    assert.ok(config.network === "irc");
    assert.equal(config.zimchat.dir, join(dir, "data"));
    assert.deepEqual(config.irc.sasl, { account: "z", password: "env-pw" });
    assert.equal(config.irc.port, 6667);
    assert.equal(config.irc.puppets.suffix, "[zim]");
    assert.deepEqual(config.irc.reconnect, { minMs: 1000, maxMs: 60000 });
  });

  it("names what is wrong: a missing file, bad YAML, an unknown key, a missing section", () => {
    const dir = mkdtempSync(join(tmpdir(), "bridge-config-"));
    assert.throws(() => loadBridgeConfig(join(dir, "none.yaml"), "irc", {}), /none\.yaml: cannot read it \(ENOENT\)/);
    writeFileSync(join(dir, "bad.yaml"), "zimchat: [unclosed");
    assert.throws(() => loadBridgeConfig(join(dir, "bad.yaml"), "irc", {}), /bad\.yaml: not valid YAML/);
    writeFileSync(join(dir, "typo.yaml"), "zimchat: { dir: d }\nirc: { host: h, nik: x }\n");
    assert.throws(
      () => loadBridgeConfig(join(dir, "typo.yaml"), "irc", {}),
      (e: unknown) => e instanceof BridgeConfigFileError && /irc: Unrecognized key: "nik"/.test(e.message),
    );
    writeFileSync(join(dir, "irc-only.yaml"), "zimchat: { dir: d }\nirc: { host: h }\n");
    assert.throws(() => loadBridgeConfig(join(dir, "irc-only.yaml"), "xmpp", {}), /no xmpp section/);
    writeFileSync(join(dir, "huge.yaml"), "#".repeat(300 * 1024));
    assert.throws(() => loadBridgeConfig(join(dir, "huge.yaml"), "irc", {}), /larger than 262144 bytes/);
  });

  it("zimchat-bridge: --help names both networks and the secrets' variables; a bad config exits 1 saying why", () => {
    const main = fileURLToPath(new URL("../src/main.js", import.meta.url));
    const help = spawnSync(process.execPath, [main, "--help"], { encoding: "utf8" });
    assert.equal(help.status, 0);
    for (const word of ["irc [options]", "xmpp [options]", ...Object.values(secretEnv)])
      assert.ok(help.stdout.includes(word));
    const dir = mkdtempSync(join(tmpdir(), "bridge-config-"));
    writeFileSync(join(dir, "c.yaml"), "zimchat: { dir: d }\n");
    const bad = spawnSync(process.execPath, [main, "irc", "--config", join(dir, "c.yaml")], { encoding: "utf8" });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /c\.yaml: no irc section/);
  });
});
