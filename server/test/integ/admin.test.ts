import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PublicKey } from "@signalapp/libsignal-client";
import { definePlugin, type DeviceRemovedEvent } from "@zimchat/plugin-sdk/server";
import { adminRoutes, type Envelope } from "@zimchat/protocol";
import { z } from "zod";
import { ConfigError, resolveConfig } from "../../src/index.js";
import { CertificateService } from "../../src/services/certificate-service.js";
import { keyFileNames } from "../../src/services/key-files.js";
import type { AccountStore } from "../../src/stores/account-store.js";
import {
  linkDevice,
  roomyRateLimits,
  startServer,
  startSession,
  testProvider,
  type TestServer,
} from "../support/harness.js";
import { certificateFor } from "../support/sealed.js";
import type { SignalDevice } from "@zimchat/testing/signal";

const adminToken = `admin-${randomBytes(18).toString("base64url")}`;
const bearer = `Bearer ${adminToken}`;

async function trustRootOf(server: TestServer): Promise<PublicKey> {
  const res = await server.http().get("/v1/certificate/trust-root");
  return PublicKey.deserialize(new Uint8Array(Buffer.from(res.body.publicKey, "base64")));
}

async function uploadAttachment(server: TestServer, device: SignalDevice, bytes: number): Promise<string> {
  const res = await server
    .http()
    .post("/v1/attachments")
    .set("Authorization", device.authHeader)
    .set("Content-Type", "application/octet-stream")
    .send(randomBytes(bytes));
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.id as string;
}

async function queued(server: TestServer, device: SignalDevice): Promise<Envelope[]> {
  const res = await server.http().get("/v1/messages").set("Authorization", device.authHeader);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.envelopes;
}

describe("admin API: off without a token", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server.stop());

  it("answers every admin route with 404 not_found, as if absent, even with a bearer token", async () => {
    for (const route of Object.values(adminRoutes)) {
      const path = route.path.replace(":account", "someone").replace(":deviceId", "2").replace(":id", "abcdef01");
      const res = await server.http()[route.method](path).set("Authorization", bearer);
      assert.equal(res.status, 404, `${route.method} ${path}`);
      assert.equal(res.body.code, "not_found");
    }
    const backup = await server.http().post("/admin/v1/backup").set("Authorization", bearer);
    assert.equal(backup.status, 404);
  });

  it("refuses an admin token that is too short, without echoing it", () => {
    assert.throws(
      () => resolveConfig({ adminToken: "short-secret" }),
      (error: unknown) => error instanceof ConfigError && !error.message.includes("short-secret"),
    );
  });
});

describe("admin API", () => {
  let server: TestServer;
  const logs: string[] = [];
  const removed: DeviceRemovedEvent[] = [];
  const observer = definePlugin({
    name: "removal-observer",
    configSchema: z.object({}).strict(),
    setup: () => ({ deviceRemoved: (event) => void removed.push({ ...event }) }),
  });
  before(async () => {
    server = await startServer(
      { adminToken, logLevel: "info", rateLimits: roomyRateLimits, plugins: [{ use: observer }] },
      logs,
    );
  });
  after(async () => server.stop());

  it("refuses a missing, malformed or wrong token with 401 unauthorized, and never logs the token", async () => {
    for (const header of [
      undefined,
      adminToken,
      `Basic ${adminToken}`,
      `Bearer ${adminToken}x`,
      "Bearer ",
      `Bearer ${adminToken.slice(0, -1)}`,
    ]) {
      const req = server.http().get("/admin/v1/stats");
      const res = await (header === undefined ? req : req.set("Authorization", header));
      assert.equal(res.status, 401, String(header));
      assert.equal(res.body.code, "unauthorized");
      assert.match(String(res.headers["www-authenticate"]), /^Bearer/);
    }
    const created = await server.http().post("/admin/v1/invites").set("Authorization", bearer).send({ maxUses: 1 });
    assert.equal(created.status, 201);
    assert.ok(
      logs.some((l) => l.includes("admin request")),
      "admin requests are logged",
    );
    assert.ok(
      logs.some((l) => l.includes("admin token refused")),
      "refusals are logged",
    );
    assert.ok(
      !logs.some((l) => l.includes(adminToken) || l.includes(created.body.token)),
      "neither the admin token nor an invite token reaches the logs",
    );
  });

  it("documents the admin routes with a bearer security scheme in /openapi.json", async () => {
    const res = await server.http().get("/openapi.json");
    const doc = res.body as {
      paths: Record<string, Record<string, { security: unknown; parameters: { name: string; in: string }[] }>>;
      components: {
        securitySchemes: Record<string, { scheme?: string }>;
        schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }>;
      };
    };
    assert.equal(doc.components.securitySchemes.adminBearer?.scheme, "bearer");
    // A federation peer row says whether it is pinned and which identity fingerprint was seen.
    const peer = doc.components.schemas.FederationPeer;
    assert.ok(peer?.properties?.pinned && peer.properties.fingerprint, JSON.stringify(peer));
    assert.ok(peer.required?.includes("pinned") && peer.required.includes("fingerprint"));
    assert.ok(doc.components.schemas.ServerDocument?.required?.includes("identityKey"));
    assert.deepEqual(doc.paths["/admin/v1/stats"]?.get?.security, [{ adminBearer: [] }]);
    assert.ok(doc.paths["/admin/v1/backup"]?.post);
    assert.ok(doc.paths["/admin/v1/accounts/{account}/devices/{deviceId}"]?.delete);
    assert.deepEqual(
      doc.paths["/admin/v1/accounts"]?.get?.parameters.map((p) => `${p.in}:${p.name}`),
      ["query:cursor", "query:limit"],
    );
  });

  it("creates, lists (without tokens) and revokes invites; the invite works for registration until revoked", async () => {
    const created = await server
      .http()
      .post("/admin/v1/invites")
      .set("Authorization", bearer)
      .send({ maxUses: 2, expiresInSeconds: 3600 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.match(created.body.token, /^zc_/);
    const listed = await server.http().get("/admin/v1/invites").set("Authorization", bearer);
    assert.equal(listed.status, 200);
    const mine = listed.body.invites.find((i: { id: string }) => i.id === created.body.id);
    assert.deepEqual(Object.keys(mine).sort(), ["createdAt", "expiresAt", "id", "maxUses", "revokedAt", "uses"]);
    assert.ok(!JSON.stringify(listed.body).includes(created.body.token));
    assert.equal(
      (await server.http().delete(`/admin/v1/invites/${created.body.id}`).set("Authorization", bearer)).status,
      204,
    );
    const again = await server.http().delete(`/admin/v1/invites/${created.body.id}`).set("Authorization", bearer);
    assert.equal(again.status, 404);
    assert.equal(again.body.code, "not_found");
    const row = await server.home.database.prisma.invite.findUnique({ where: { id: created.body.id } });
    assert.ok(row?.revokedAt);
  });

  it("refuses bad input with 400 invalid_request and changes nothing", async () => {
    const before = await server.home.database.prisma.invite.count();
    for (const body of [{ maxUses: 0 }, { maxUses: "3" }, { expiresInSeconds: 1 }, { maxUses: 1, extra: true }]) {
      const res = await server.http().post("/admin/v1/invites").set("Authorization", bearer).send(body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.code, "invalid_request");
    }
    assert.equal(await server.home.database.prisma.invite.count(), before);
    for (const path of [
      "/admin/v1/accounts?limit=0",
      "/admin/v1/accounts?limit=501",
      "/admin/v1/accounts?cursor=nope",
      "/admin/v1/accounts?other=1",
    ]) {
      const res = await server.http().get(path).set("Authorization", bearer);
      assert.equal(res.status, 400, path);
      assert.equal(res.body.code, "invalid_request");
    }
    for (const path of ["/admin/v1/accounts/BAD!/disabled", "/admin/v1/accounts/x/disabled"]) {
      const res = await server.http().put(path).set("Authorization", bearer);
      assert.equal(res.status, 400, path);
    }
    const device = await server.http().delete("/admin/v1/accounts/someone/devices/0").set("Authorization", bearer);
    assert.equal(device.status, 400);
    const unknown = await server.http().delete("/admin/v1/accounts/nobody_here").set("Authorization", bearer);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, "not_found");
  });

  it("lists accounts with metadata only, one page at a time", async () => {
    const alice = await server.register();
    await server.register();
    await server.register();
    await uploadAttachment(server, alice, 1000);
    const seen = new Map<string, Record<string, unknown>>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: { accounts: Record<string, unknown>[]; nextCursor: string | null } } =
        await server
          .http()
          .get(`/admin/v1/accounts?limit=2${cursor ? `&cursor=${cursor}` : ""}`)
          .set("Authorization", bearer);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.ok(res.body.accounts.length <= 2);
      for (const a of res.body.accounts) seen.set(String(a.id), a);
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    const total = await server.home.database.prisma.account.count();
    assert.equal(seen.size, total);
    assert.equal(pages, Math.max(1, Math.ceil(total / 2)));
    const row = seen.get(alice.uuid)!;
    assert.deepEqual(Object.keys(row).sort(), ["attachmentBytes", "created", "devices", "disabled", "id", "username"]);
    assert.equal(row.devices, 1);
    assert.equal(row.disabled, false);
    assert.equal(row.attachmentBytes, 1000);
    assert.match(String(row.created), /^\d{4}-\d{2}-\d{2}$/);
  });

  it("disables an account: REST and Socket.IO refuse it, its socket gets closing(disabled); enabling lets it back in", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const socket = await server.connect(alice);
    await socket.queueEmpty;
    const closing = new Promise<string>((resolve) => socket.socket.once("closing", resolve));
    const disconnected = new Promise<void>((resolve) => socket.socket.once("disconnect", () => resolve()));
    const res = await server.http().put(`/admin/v1/accounts/${alice.uuid}/disabled`).set("Authorization", bearer);
    assert.equal(res.status, 204, JSON.stringify(res.body));
    assert.equal(await closing, "disabled");
    await disconnected;

    const whoami = await server.http().get("/v1/accounts/whoami").set("Authorization", alice.authHeader);
    assert.equal(whoami.status, 403);
    assert.equal(whoami.body.code, "account_disabled");
    await assert.rejects(
      server.connect(alice),
      (error: Error & { data?: { code?: string } }) => error.data?.code === "account_disabled",
    );

    // Messages to a disabled account are still queued, and delivered once it is enabled again.
    await startSession(server, bob, alice);
    const message = await bob.encrypt(alice.uuid, 1, "while you were away");
    const sent = await server
      .http()
      .put(`/v1/messages/${alice.uuid}`)
      .set("Authorization", bob.authHeader)
      .send({ messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: alice.registrationId }] });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));

    const stats = await server.http().get("/admin/v1/stats").set("Authorization", bearer);
    assert.ok(stats.body.disabledAccounts >= 1);
    assert.equal(
      (await server.http().delete(`/admin/v1/accounts/${alice.uuid}/disabled`).set("Authorization", bearer)).status,
      204,
    );
    const [envelope] = await queued(server, alice);
    assert.equal(await alice.decrypt(bob.uuid, 1, envelope!.type, envelope!.content), "while you were away");
    const row = await server.home.database.prisma.account.findUnique({ where: { id: alice.uuid } });
    assert.equal(row?.disabledAt, null);
  });

  it("deletes an account: keys, queues, attachments (rows and blobs) gone, sockets closed, credentials dead, username free", async () => {
    const alice = await server.register("to_be_deleted");
    const bob = await server.register();
    const { device: laptop } = await linkDevice(server, alice);
    const upload = await server
      .http()
      .put("/v1/keys")
      .set("Authorization", alice.authHeader)
      .send(alice.keyUpload(3, 3));
    assert.equal(upload.status, 204, JSON.stringify(upload.body));
    const blob = await uploadAttachment(server, alice, 2048);
    const blobPath = join(server.dataDir, "attachments", blob);
    assert.ok(existsSync(blobPath));
    await startSession(server, bob, alice);
    const message = await bob.encrypt(alice.uuid, 1, "queued");
    await server
      .http()
      .put(`/v1/messages/${alice.uuid}`)
      .set("Authorization", bob.authHeader)
      .send({ messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: alice.registrationId }] });
    const socket = await server.connect(laptop);
    const closing = new Promise<string>((resolve) => socket.socket.once("closing", resolve));

    const res = await server.http().delete("/admin/v1/accounts/to_be_deleted").set("Authorization", bearer);
    assert.equal(res.status, 204, JSON.stringify(res.body));
    assert.equal(await closing, "deleted");

    const prisma = server.home.database.prisma;
    const where = { accountId: alice.uuid };
    assert.equal(await prisma.account.count({ where: { id: alice.uuid } }), 0);
    for (const [name, count] of [
      ["devices", await prisma.device.count({ where })],
      ["signed pre-keys", await prisma.signedPreKey.count({ where })],
      ["kyber last resort", await prisma.kyberLastResortKey.count({ where })],
      ["ec pre-keys", await prisma.ecPreKey.count({ where })],
      ["kyber pre-keys", await prisma.kyberPreKey.count({ where })],
      ["envelopes", await prisma.envelope.count({ where })],
      ["attachments", await prisma.attachment.count({ where })],
    ] as const)
      assert.equal(count, 0, name);
    assert.ok(!existsSync(blobPath), "the attachment blob is deleted");
    for (const device of [alice, laptop]) {
      assert.equal(
        (await server.http().get("/v1/accounts/whoami").set("Authorization", device.authHeader)).status,
        401,
      );
    }
    await assert.rejects(server.connect(alice));
    const told = removed
      .filter((e) => e.accountId === alice.uuid)
      .map((e) => `${e.deviceId}:${e.reason}`)
      .sort();
    assert.deepEqual(
      told,
      [`1:account_deleted`, `${laptop.deviceId}:account_deleted`],
      "plugins hear deviceRemoved for each device",
    );
    const again = await server.register("to_be_deleted");
    assert.notEqual(again.uuid, alice.uuid);
    assert.equal(
      (await server.http().delete(`/admin/v1/accounts/${alice.uuid}`).set("Authorization", bearer)).status,
      404,
    );
  });

  it("removes a linked device (closing its socket), but not the primary", async () => {
    const alice = await server.register();
    const { device: laptop } = await linkDevice(server, alice);
    const socket = await server.connect(laptop);
    const closing = new Promise<string>((resolve) => socket.socket.once("closing", resolve));
    const primary = await server
      .http()
      .delete(`/admin/v1/accounts/${alice.uuid}/devices/1`)
      .set("Authorization", bearer);
    assert.equal(primary.status, 403);
    assert.equal(primary.body.code, "forbidden");
    const res = await server
      .http()
      .delete(`/admin/v1/accounts/${alice.uuid}/devices/${laptop.deviceId}`)
      .set("Authorization", bearer);
    assert.equal(res.status, 204, JSON.stringify(res.body));
    assert.equal(await closing, "removed");
    assert.deepEqual(
      removed.filter((e) => e.accountId === alice.uuid).map((e) => `${e.deviceId}:${e.reason}`),
      [`${laptop.deviceId}:removed_by_admin`],
    );
    assert.equal((await server.http().get("/v1/accounts/whoami").set("Authorization", laptop.authHeader)).status, 401);
    assert.equal((await server.http().get("/v1/accounts/whoami").set("Authorization", alice.authHeader)).status, 200);
    const missing = await server
      .http()
      .delete(`/admin/v1/accounts/${alice.uuid}/devices/${laptop.deviceId}`)
      .set("Authorization", bearer);
    assert.equal(missing.status, 404);
  });

  it("counts accounts, devices, queued envelopes and connected devices", async () => {
    const alice = await server.register();
    const bob = await server.register();
    const socket = await server.connect(bob);
    await socket.queueEmpty;
    await startSession(server, alice, bob);
    const message = await alice.encrypt(bob.uuid, 1, "counted");
    await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({ messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] });
    const prisma = server.home.database.prisma;
    const res = await server.http().get("/admin/v1/stats").set("Authorization", bearer);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {
      accounts: await prisma.account.count(),
      disabledAccounts: await prisma.account.count({ where: { disabledAt: { not: null } } }),
      devices: await prisma.device.count(),
      queuedEnvelopes: await prisma.envelope.count(),
      connectedDevices: 1,
    });
    socket.close();
  });

  it("rotates the server certificate: new key id, same trust root, and certificates issued before still work", async () => {
    const alice = await server.register();
    const bob = await server.register();
    await startSession(server, alice, bob);
    const trustRoot = await trustRootOf(server);
    const oldCertificate = await certificateFor(server, alice);
    const oldKeyId = oldCertificate.serverCertificate().keyId();

    const res = await server.http().post("/admin/v1/certificate/rotate").set("Authorization", bearer);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.previousKeyId, oldKeyId);
    assert.equal(res.body.keyId, oldKeyId + 1);
    assert.ok(trustRoot.equals(await trustRootOf(server)), "the trust root stays");
    for (const name of [keyFileNames.serverKey, keyFileNames.serverCertificate]) {
      assert.equal(statSync(join(server.dataDir, "keys", name)).mode & 0o777, 0o600);
    }

    const newCertificate = await certificateFor(server, alice);
    assert.equal(newCertificate.serverCertificate().keyId(), oldKeyId + 1);
    assert.ok(newCertificate.validate(trustRoot, Date.now()));

    // A sealed message under the certificate issued before the rotation still opens.
    const message = await alice.sealedEncrypt(bob.uuid, 1, "sealed before rotation", oldCertificate);
    const sent = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({ messages: [{ ...message, destinationDeviceId: 1, destinationRegistrationId: bob.registrationId }] });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const [envelope] = await queued(server, bob);
    const opened = await bob.sealedDecrypt(envelope!.content, trustRoot);
    assert.equal(opened.plaintext, "sealed before rotation");
  });

  it("refuses rotation with 409 trust_root_offline when the trust root's private key is kept offline", async () => {
    const keyFile = join(server.dataDir, "keys", keyFileNames.trustRootKey);
    const saved = readFileSync(keyFile);
    rmSync(keyFile);
    try {
      const before = readFileSync(join(server.dataDir, "keys", keyFileNames.serverCertificate), "utf8");
      const res = await server.http().post("/admin/v1/certificate/rotate").set("Authorization", bearer);
      assert.equal(res.status, 409);
      assert.equal(res.body.code, "trust_root_offline");
      assert.equal(readFileSync(join(server.dataDir, "keys", keyFileNames.serverCertificate), "utf8"), before);
    } finally {
      writeFileSync(keyFile, saved, { mode: 0o600 });
    }
  });

  it("another process sharing the data directory picks up a rotated certificate", async () => {
    const accounts = {
      find: async () => ({ username: "x", identityKey: new Uint8Array(33) }),
    } as unknown as AccountStore;
    const other = new CertificateService(server.dataDir, accounts, 3_600_000, 0);
    const before = other.open().serverCertificate.keyId();
    const res = await server.http().post("/admin/v1/certificate/rotate").set("Authorization", bearer);
    assert.equal(res.status, 200);
    assert.equal(other.open().serverCertificate.keyId(), before + 1);
  });

  it(`backs the database up online${testProvider === "postgresql" ? " (PostgreSQL: 409 backup_unsupported)" : ""}`, async (t) => {
    const res = await server.http().post("/admin/v1/backup").set("Authorization", bearer);
    if (testProvider === "postgresql") {
      assert.equal(res.status, 409);
      assert.equal(res.body.code, "backup_unsupported");
      assert.match(res.body.message, /pg_dump/);
      return;
    }
    t.diagnostic("backup and restore with writes in flight are covered by admin-cli.test");
    assert.equal(res.status, 200);
    assert.equal(res.headers["content-type"], "application/vnd.sqlite3");
  });
});

describe("admin: SQLite file header", () => {
  it("a backup starts with the SQLite header", { skip: testProvider !== "sqlite" }, async () => {
    const server = await startServer({ adminToken });
    try {
      const res = await server
        .http()
        .post("/admin/v1/backup")
        .set("Authorization", bearer)
        .buffer(true)
        .parse((response, done) => {
          const chunks: Buffer[] = [];
          response.on("data", (c: Buffer) => chunks.push(c));
          response.on("end", () => done(null, Buffer.concat(chunks)));
        });
      assert.equal(res.status, 200);
      const body = res.body as Buffer;
      assert.equal(body.subarray(0, 16).toString("latin1"), "SQLite format 3\0");
      assert.deepEqual(
        readdirSync(server.dataDir).filter((name) => name.startsWith(".backup-")),
        [],
        "the temporary copy is removed",
      );
      const dir = mkdtempSync(join(tmpdir(), "zimchat-admin-"));
      writeFileSync(join(dir, "b.db"), body);
      assert.ok(statSync(join(dir, "b.db")).size > 0);
      rmSync(dir, { recursive: true, force: true });
    } finally {
      await server.stop();
    }
  });
});
