import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { encryptFor, startServer, startSession, testProvider, type TestServer } from "../support/harness.js";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));

describe("what a seized server holds: no plaintext, no secrets in logs", () => {
  let server: TestServer;
  const logs: string[] = [];
  before(async () => {
    server = await startServer({ logLevel: "trace", registration: "invite" }, logs);
  });
  after(async () => server.stop());

  it("finds no marker plaintext in the database files or logs, and no credentials, keys, ciphertext or addresses in logs", async () => {
    const invite = JSON.parse(
      execFileSync(
        process.execPath,
        [
          bin,
          "invite",
          "create",
          "--uses",
          "5",
          "--json",
          "--data-dir",
          server.dataDir,
          "--database-url",
          server.databaseUrl,
        ],
        { encoding: "utf8" },
      ),
    ) as { token: string };
    const { SignalDevice } = await import("@zimchat/testing/signal");
    const register = async (name: string) => {
      const device = new SignalDevice();
      const res = await server.http().post("/v1/accounts").send(device.registration(name, invite.token));
      assert.equal(res.status, 201);
      device.uuid = res.body.uuid;
      return device;
    };
    const alice = await register("marker_alice");
    const bob = await register("marker_bob");
    await startSession(server, alice, bob);

    const markers = Array.from({ length: 5 }, (_, i) => `ZIMCHAT-MARKER-${i}-Bond-notes-in-Harare`);
    const ciphertexts: string[] = [];
    const bobSocket = await server.connect(bob);
    await bobSocket.queueEmpty;
    for (const marker of markers) {
      const messages = await encryptFor(
        alice,
        { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
        marker,
      );
      ciphertexts.push(messages[0]!.content);
      const res = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      assert.equal(res.status, 200);
    }
    // Plaintext sent as content is refused (it does not parse as a libsignal message) and stored nowhere.
    const plain = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({
        messages: [
          {
            type: "whisper",
            destinationDeviceId: 1,
            destinationRegistrationId: bob.registrationId,
            content: Buffer.from(markers[0]!).toString("base64"),
          },
        ],
      });
    assert.equal(plain.status, 400);
    assert.equal(plain.body.code, "invalid_ciphertext");
    // A failed login, a refused body and an unknown route also go through the logs.
    await server
      .http()
      .get("/v1/accounts/whoami")
      .set("Authorization", `Basic ${Buffer.from(`${alice.uuid}.1:wrong-password-${markers[1]}`).toString("base64")}`);
    await server
      .http()
      .post("/v1/accounts")
      .set("content-type", "application/json")
      .send(`{"username": "${markers[2]}"`);
    await bobSocket.waitFor(5);
    // Bob reads them (proving they were real messages), some stay queued unacknowledged.
    for (const e of bobSocket.received)
      assert.ok(markers.includes(await bob.decrypt(alice.uuid, 1, e.type, e.content)));
    await bobSocket.socket.emitWithAck("ack", { ids: bobSocket.received.slice(0, 2).map((e) => e.id) });
    bobSocket.close();

    if (testProvider === "sqlite") {
      // Every file of the data dir: the database, its WAL and shared memory.
      const files = readdirSync(server.dataDir).filter((f) => f.startsWith("zimchat.db"));
      assert.ok(
        files.includes("zimchat.db") && files.includes("zimchat.db-wal"),
        `database files: ${files.join(", ")}`,
      );
      for (const file of files) {
        const data = readFileSync(join(server.dataDir, file));
        for (const marker of markers) {
          assert.equal(data.indexOf(marker), -1, `${marker} found in ${file}`);
          assert.equal(data.indexOf(Buffer.from(marker, "utf16le")), -1, `${marker} (UTF-16) found in ${file}`);
        }
      }
    } else {
      // PostgreSQL: every text and binary column of every table of the schema.
      const dump = JSON.stringify(
        await Promise.all(
          [
            "Account",
            "Device",
            "Envelope",
            "EcPreKey",
            "KyberPreKey",
            "SignedPreKey",
            "KyberLastResortKey",
            "Invite",
          ].map((t) => server.home.database.prisma.$queryRawUnsafe(`SELECT * FROM "${t}"`)),
        ),
        (_k, v: unknown) =>
          v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : typeof v === "bigint" ? String(v) : v,
      );
      for (const marker of markers) assert.ok(!dump.includes(marker), `${marker} found in the database`);
    }

    const logText = logs.join("");
    assert.ok(logs.length > 5, "the server logged at trace level");
    const forbidden = [
      ...markers,
      alice.password,
      bob.password,
      invite.token,
      alice.authHeader.slice(6),
      bob.authHeader.slice(6),
      "127.0.0.1",
      "::ffff:",
      alice.registration("x").identityKey,
      ...ciphertexts.map((c) => c.slice(0, 40)),
    ];
    for (const secret of forbidden) assert.ok(!logText.includes(secret), `the logs contain ${secret.slice(0, 30)}...`);
    // Request logs carry route patterns, not ids from the path.
    assert.ok(!logText.includes(bob.uuid), "no account ids in request logs");
  });
});
