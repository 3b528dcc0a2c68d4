/**
 * TLS expectations: the SDK and the terminal client refuse plain
 * http:// to a host that is not this machine, before any request, unless the
 * app allows it. 192.0.2.1 (TEST-NET-1) is never contacted: a refusal that
 * came after a connection attempt would hang, not fail fast.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrivateKey } from "@signalapp/libsignal-client";
import { InsecureServerUrlError, MemoryDeviceStore, ZimClient, checkServerUrl, isLoopbackHost } from "../src/index.js";
import { cli, failed } from "./support/chat-cli.js";

const remote = "http://192.0.2.1:8080";

function storeFor(serverUrl: string): MemoryDeviceStore {
  const store = new MemoryDeviceStore();
  store.setLocal({
    serverUrl,
    uuid: "6f1c1a52-3c1e-4f57-9d55-0d6f3f1b2c11",
    deviceId: 1,
    username: "alice",
    password: "x".repeat(32),
    registrationId: 7,
    identityPrivateKey: PrivateKey.generate().serialize(),
    nextPreKeyId: 1,
    accessKey: Buffer.alloc(16).toString("base64"),
  });
  return store;
}

describe("plain http only to this machine", () => {
  it("loopback and https pass; any other plain http is refused with a clear error unless allowed", () => {
    for (const url of [
      "http://127.0.0.1:8080",
      "http://127.9.8.7",
      "http://[::1]:3000",
      "http://localhost:8080",
      "http://LOCALHOST",
      "https://chat.example.org",
      "https://10.0.0.5:8443",
    ]) {
      assert.doesNotThrow(() => checkServerUrl(url), url);
    }
    for (const url of [
      remote,
      "http://chat.example.org",
      "http://10.0.0.5",
      "http://[fe80::1]",
      "http://127.example.org",
      "http://0.0.0.0:8080",
    ]) {
      assert.throws(
        () => checkServerUrl(url),
        (error: unknown) =>
          error instanceof InsecureServerUrlError && error.code === "insecure_http" && /https:\/\//.test(error.message),
        url,
      );
      assert.doesNotThrow(() => checkServerUrl(url, { allowInsecureHttp: true }), url);
    }
    assert.throws(
      () => checkServerUrl("ftp://chat.example.org"),
      (e: unknown) => e instanceof InsecureServerUrlError && e.code === "unsupported_scheme",
    );
    assert.throws(
      () => checkServerUrl("chat.example.org"),
      (e: unknown) => e instanceof InsecureServerUrlError && e.code === "invalid_url",
    );
    assert.equal(isLoopbackHost("[::ffff:127.0.0.1]"), true);
  });

  it("ZimClient.register and link refuse before any request and leave the store empty", async () => {
    const store = new MemoryDeviceStore();
    await assert.rejects(ZimClient.register({ serverUrl: remote, username: "alice", store }), InsecureServerUrlError);
    await assert.rejects(
      ZimClient.link({ serverUrl: "http://chat.example.org", store, onLinkCode: () => assert.fail("no link code") }),
      InsecureServerUrlError,
    );
    assert.equal(store.getLocal(), null);
  });

  it("a stored device on a plain-http remote server is refused unless allowed (the choice made at registration is kept)", () => {
    assert.throws(
      () => new ZimClient({ store: storeFor("http://chat.example.org"), keyTransparency: false }),
      InsecureServerUrlError,
    );
    assert.ok(
      new ZimClient({ store: storeFor("http://chat.example.org"), keyTransparency: false, allowInsecureHttp: true }),
    );
    const allowed = storeFor("http://chat.example.org");
    allowed.setValue("allowInsecureHttp", "1");
    assert.ok(new ZimClient({ store: allowed, keyTransparency: false }));
    assert.ok(new ZimClient({ store: storeFor("http://127.0.0.1:8080"), keyTransparency: false }));
  });

  it("zimchat-chat register refuses with one line (code insecure_http) and creates no profile", async () => {
    const profile = join(mkdtempSync(join(tmpdir(), "zimchat-insecure-")), "profile");
    const line = failed(
      await cli(["register", "--server", remote, "--username", "alice", "--profile", profile, "--json"]),
    );
    assert.equal(line.code, "insecure_http");
    assert.match(String(line.message), /--allow-insecure-http/);
    assert.equal(existsSync(join(profile, "device.db")), false);
  });
});
