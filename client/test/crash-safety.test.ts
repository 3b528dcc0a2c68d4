import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { HttpApi, SqliteDeviceStore, ZimClient } from "../src/index.js";
import { deviceDir, type Homeserver, inbox, registerDevice, startHomeserver } from "@zimchat/testing/spawn";

const fixture = fileURLToPath(new URL("./fixtures/receive-and-die.js", import.meta.url));

describe("client crash safety", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("a client killed after decrypting but before acknowledging shows the redelivered message once", async () => {
    const alice = await registerDevice(server.url, undefined, { sendReceipts: false });
    const bob = await registerDevice(server.url);
    const bobName = bob.local.username;
    const credentials = { uuid: bob.local.uuid, deviceId: 1, password: bob.local.password };
    await bob.close();
    await alice.sendText(bobName, "exactly once");

    const child = spawn(process.execPath, [fixture, join(deviceDir, `${bobName}.db`)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const signal = await new Promise((resolve) => child.once("exit", (_code, sig) => resolve(sig)));
    assert.equal(signal, "SIGKILL");
    assert.equal(JSON.parse(out.trim()).text, "exactly once", "the killed client had decrypted it");
    const queued = await new HttpApi(server.url, credentials).fetchMessages();
    assert.equal(queued.envelopes.length, 1, "not acknowledged, so still queued");

    const restarted = new ZimClient({
      store: new SqliteDeviceStore(join(deviceDir, `${bobName}.db`)),
      sendReceipts: false,
    });
    const shown = inbox(restarted);
    await restarted.connect();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(shown.length, 0, "the redelivered envelope is recognised and not shown again");
    assert.deepEqual(
      (await restarted.conversation(alice.local.username)).map((m) => m.text),
      ["exactly once"],
    );
    assert.equal(
      (await new HttpApi(server.url, credentials).fetchMessages()).envelopes.length,
      0,
      "acknowledged after the restart",
    );
    await restarted.close();
    await alice.close();
  });
});
