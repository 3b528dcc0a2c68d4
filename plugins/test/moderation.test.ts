/**
 * The moderation plugin in a real homeserver with real E2EE clients:
 * registration admission, the hourly send quota (authenticated sends only),
 * suspended accounts, the limits route, and config validation at start-up.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ApiError, MemoryDeviceStore, ZimClient } from "@zimchat/client";
import { testHomeserver, type TestHomeserver } from "@zimchat/testing";
import { ConfigError } from "@zimchat/server";
import pg from "pg";
import { moderationPlugin } from "../src/moderation/index.js";

/** A database and port that outlive one test homeserver, so a test can restart it with other plugin config. */
async function sharedDatabase(): Promise<{
  config: { dataDir: string; databaseUrl: string; port: number };
  drop(): Promise<void>;
}> {
  const dir = mkdtempSync(join(tmpdir(), "zimchat-moderation-"));
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const base = process.env.ZIMCHAT_TEST_DATABASE_URL;
  const schema = `m_${randomBytes(6).toString("hex")}`;
  let databaseUrl = `file:${join(dir, "zimchat.db")}`;
  if (base?.startsWith("postgres")) {
    const url = new URL(base);
    url.searchParams.set("schema", schema);
    databaseUrl = url.toString();
  }
  return {
    config: { dataDir: join(dir, "data"), databaseUrl, port },
    async drop() {
      rmSync(dir, { recursive: true, force: true });
      if (!base?.startsWith("postgres")) return;
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

function basicAuth(client: ZimClient): string {
  const { uuid, deviceId, password } = client.local;
  return `Basic ${Buffer.from(`${uuid}.${deviceId}:${password}`).toString("base64")}`;
}

async function refusal(work: Promise<unknown>): Promise<ApiError> {
  const error = await work.then(
    () => assert.fail("expected a refusal"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ApiError, `expected an ApiError, got ${String(error)}`);
  return error;
}

/** A registered, connected device that sends authenticated only (so every send counts against its quota). */
async function authenticatedClient(hs: TestHomeserver, username: string): Promise<ZimClient> {
  const client = await ZimClient.register({
    serverUrl: hs.url,
    username,
    store: new MemoryDeviceStore(),
    sealedSender: false,
    sendReceipts: false,
  });
  await client.connect();
  return client;
}

describe("moderation plugin", () => {
  let hs: TestHomeserver;
  const clients: ZimClient[] = [];
  before(async () => {
    hs = await testHomeserver({
      plugins: [{ use: moderationPlugin, config: { reservedUsernames: ["admin", "staff_*"], sendsPerHour: 3 } }],
    });
  });
  after(async () => {
    for (const client of clients) await client.close();
    await hs.close();
  });

  test("reserved usernames and prefixes are refused with the plugin's code, and no account is created", async () => {
    for (const username of ["admin", "staff_alice"]) {
      const error = await refusal(ZimClient.register({ serverUrl: hs.url, username, store: new MemoryDeviceStore() }));
      assert.equal(error.status, 403);
      assert.equal(error.code, "refused_by_plugin");
      assert.equal(error.body.plugin, "moderation");
      assert.equal(error.body.pluginCode, "username_reserved");
    }
    assert.equal(
      await hs.server.database.prisma.account.count({ where: { username: { in: ["admin", "staff_alice"] } } }),
      0,
    );
    // Not reserved: "staff" itself and names that merely contain the word.
    clients.push(await authenticatedClient(hs, "staff"), await authenticatedClient(hs, "adminton"));
  });

  test("an account's authenticated sends stop at the hourly quota with retryAfterSeconds; other accounts are unaffected", async () => {
    const dave = await authenticatedClient(hs, "dave");
    const erin = await authenticatedClient(hs, "erin");
    const frank = await authenticatedClient(hs, "frank");
    clients.push(dave, erin, frank);
    const received: string[] = [];
    erin.on("message", (m) => received.push(m.text));
    for (let i = 1; i <= 3; i++) await dave.sendText("erin", `message ${i}`);
    const error = await refusal(dave.sendText("erin", "message 4"));
    assert.equal(error.status, 403);
    assert.equal(error.body.pluginCode, "send_quota_exceeded");
    assert.ok(
      error.retryAfterMs()! > 0 && error.retryAfterMs()! <= 3_600_000,
      `retry after ${error.retryAfterMs()} ms`,
    );
    await frank.sendText("erin", "frank has his own quota");

    const limits = await fetch(`${hs.url}/plugins/moderation/v1/limits`, {
      headers: { authorization: basicAuth(dave) },
    });
    assert.equal(limits.status, 200);
    assert.deepEqual(await limits.json(), { sendsPerHour: 3, sentThisHour: 3, suspended: false });
    assert.equal((await fetch(`${hs.url}/plugins/moderation/v1/limits`)).status, 401);

    for (let waited = 0; received.length < 4 && waited < 10_000; waited += 50)
      await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(received.sort(), ["frank has his own quota", "message 1", "message 2", "message 3"]);
  });

  test("sealed sends carry no sender, so they are not counted", async () => {
    const gina = await ZimClient.register({
      serverUrl: hs.url,
      username: "gina",
      store: new MemoryDeviceStore(),
      sendReceipts: false,
    });
    const hank = await ZimClient.register({
      serverUrl: hs.url,
      username: "hank",
      store: new MemoryDeviceStore(),
      sendReceipts: false,
    });
    clients.push(gina, hank);
    await gina.connect();
    await hank.connect();
    const first = new Promise((resolve) => gina.once("message", resolve));
    await hank.sendText("gina", "hello gina"); // gina learns hank's access key from this
    await first;
    const received: boolean[] = [];
    hank.on("message", (m) => received.push(m.sealed));
    for (let i = 0; i < 5; i++) await gina.sendText("hank", `sealed ${i}`);
    for (let waited = 0; received.length < 5 && waited < 10_000; waited += 50)
      await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(received, [true, true, true, true, true]);
  });
});

describe("moderation plugin: allowlist and suspension", () => {
  test("only allowlisted usernames register; a suspended account cannot send but can still receive", async () => {
    // Suspension names account ids, so the account must exist before the rule: run the homeserver twice, same port and
    // database.
    const database = await sharedDatabase();
    const ivyStore = new MemoryDeviceStore();
    const nurseStore = new MemoryDeviceStore();
    let ivyId: string;
    try {
      const first = await testHomeserver({
        config: database.config,
        plugins: [{ use: moderationPlugin, config: { allowUsernames: ["clinic_*", "ivy"] } }],
      });
      try {
        const error = await refusal(
          ZimClient.register({ serverUrl: first.url, username: "mallory", store: new MemoryDeviceStore() }),
        );
        assert.equal(error.body.pluginCode, "username_not_allowed");
        assert.equal(await first.server.database.prisma.account.count(), 0);
        const ivy = await ZimClient.register({ serverUrl: first.url, username: "ivy", store: ivyStore });
        ivyId = ivy.local.uuid;
        await ivy.close();
        await (await ZimClient.register({ serverUrl: first.url, username: "clinic_nurse", store: nurseStore })).close();
      } finally {
        await first.close();
      }

      const second = await testHomeserver({
        config: database.config,
        plugins: [{ use: moderationPlugin, config: { suspendedAccounts: [ivyId] } }],
      });
      const ivy = new ZimClient({ store: ivyStore, sealedSender: false, sendReceipts: false });
      const nurse = new ZimClient({ store: nurseStore, sealedSender: false, sendReceipts: false });
      try {
        await ivy.connect();
        await nurse.connect();
        const error = await refusal(ivy.sendText("clinic_nurse", "I am suspended"));
        assert.equal(error.body.pluginCode, "account_suspended");
        const received = new Promise<string>((resolve) => ivy.once("message", (m) => resolve(m.text)));
        await nurse.sendText("ivy", "you can still read this");
        assert.equal(await received, "you can still read this");
        assert.equal(await second.server.database.prisma.envelope.count({ where: { sourceAccountId: ivyId } }), 0);
      } finally {
        await ivy.close();
        await nurse.close();
        await second.close();
      }
    } finally {
      await database.drop();
    }
  });
});

describe("moderation plugin config", () => {
  test("a config the plugin's schema refuses stops start-up, naming the plugin and the field", async () => {
    await assert.rejects(
      testHomeserver({ plugins: [{ use: moderationPlugin, config: { sendsPerHour: "lots" } }] }),
      (error: unknown) =>
        error instanceof ConfigError && /moderation/.test(error.message) && /sendsPerHour/.test(error.message),
    );
    await assert.rejects(
      testHomeserver({ plugins: [{ use: moderationPlugin, config: { reservedUsernames: ["Not A Name"] } }] }),
      (error: unknown) => error instanceof ConfigError && /reservedUsernames/.test(error.message),
    );
  });
});
