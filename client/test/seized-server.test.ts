import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord } from "@signalapp/libsignal-client";
import pg from "pg";
import type { ZimClient } from "../src/index.js";
import { type Homeserver, inbox, registerDevice, startHomeserver, until } from "@zimchat/testing/spawn";
import { linkDevice } from "./support/linking.js";
import { queryServerDb } from "./support/server-db.js";

/** Every private key a client's store holds, serialized. */
function privateKeys(client: ZimClient): Buffer[] {
  const s = client.store;
  return [
    Buffer.from(s.getLocal()!.identityPrivateKey),
    ...s.listPreKeys("ec").map((k) => Buffer.from(PreKeyRecord.deserialize(k.record).privateKey().serialize())),
    ...s
      .listPreKeys("signed")
      .map((k) => Buffer.from(SignedPreKeyRecord.deserialize(k.record).privateKey().serialize())),
    ...s.listPreKeys("kyber").map((k) => Buffer.from(KyberPreKeyRecord.deserialize(k.record).secretKey().serialize())),
  ];
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/**
 * How many of `secrets` (in raw, hex, base64 and base64url form) appear in the server's logs, data directory (database,
 * WAL, attachments, keys) or PostgreSQL tables.
 */
async function secretsFound(server: Homeserver, secrets: Buffer[]): Promise<number> {
  const forms = secrets.flatMap((s) => [
    s,
    Buffer.from(s.toString("hex")),
    Buffer.from(s.toString("base64")),
    Buffer.from(s.toString("base64url")),
  ]);
  const haystacks: { name: string; data: Buffer }[] = [
    { name: "logs", data: Buffer.from(server.logs.join("\n")) },
    ...filesUnder(server.dataDir).map((f) => ({ name: f, data: readFileSync(f) })),
  ];
  if (server.databaseUrl.startsWith("postgres")) {
    const url = new URL(server.databaseUrl);
    const schema = url.searchParams.get("schema")!;
    url.searchParams.delete("schema");
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    const tables = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`,
      [schema],
    );
    for (const { table_name } of tables.rows) {
      const rows = await client.query(`SELECT * FROM "${schema}"."${table_name}"`);
      haystacks.push({
        name: table_name,
        data: Buffer.from(
          JSON.stringify(rows.rows, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("latin1") : v)),
          "latin1",
        ),
      });
    }
    await client.end();
  }
  assert.ok(haystacks.length >= 2 && haystacks.some((h) => h.data.length > 10_000), "there is something to search");
  let hits = 0;
  for (const { name, data } of haystacks) {
    for (const form of forms) {
      if (data.indexOf(form) !== -1) {
        hits++;
        console.error(`found a secret in ${name}`);
      }
    }
  }
  return hits;
}

describe("a seized server", () => {
  let server: Homeserver;
  before(async () => {
    server = await startHomeserver();
  });
  after(async () => server.stop());

  it("holds none of 1,000 message markers and none of the clients' private keys, in any form", async () => {
    const alice = await registerDevice(server.url);
    const bob = await registerDevice(server.url);
    const toAlice = inbox(alice);
    const toBob = inbox(bob);
    await alice.connect();
    await bob.connect();
    const markers = Array.from({ length: 1000 }, () => randomBytes(24));
    // Half each way; some of Bob's are read while he is offline.
    for (let i = 0; i < 1000; i += 2) {
      await alice.sendText(bob.local.username, `m${i} ${markers[i]!.toString("base64url")}`);
      await bob.sendText(alice.local.username, `m${i + 1} ${markers[i + 1]!.toString("base64url")}`);
      if (i === 600) bob.disconnect();
      if (i === 800) await bob.connect();
    }
    await until(toBob, 500);
    await until(toAlice, 500);
    assert.ok(
      toBob.every((m) => m.text.includes(markers[Number(m.text.slice(1, m.text.indexOf(" ")))]!.toString("base64url"))),
    );

    assert.equal(await secretsFound(server, [...markers, ...privateKeys(alice), ...privateKeys(bob)]), 0);
    await alice.close();
    await bob.close();
  });

  it("holds none of the markers of group messages, attachments and sealed messages, nor any client private key", async () => {
    const [alice, bob, carol] = [
      await registerDevice(server.url),
      await registerDevice(server.url),
      await registerDevice(server.url),
    ];
    const bob2 = await linkDevice(server.url, bob);
    const clients = [alice, bob, carol, bob2];
    const received = new Map(clients.map((c) => [c, inbox(c)]));
    for (const c of clients) await c.connect();
    const group = await alice.createGroup("newsroom", [bob.local.username, carol.local.username]);
    const markers = Array.from({ length: 300 }, () => randomBytes(24));
    const text = (i: number): string => `g${i} ${markers[i]!.toString("base64url")}`;
    for (let i = 0; i < 200; i++) await [alice, bob, carol][i % 3]!.sendGroupText(group.id, text(i));
    // Pairwise (sealed after the first exchange) and from a linked device.
    for (let i = 200; i < 280; i++)
      await [alice, bob2][i % 2]!.sendText(i % 2 ? alice.local.username : bob.local.username, text(i));
    // Attachments whose plaintext is made of markers.
    const file = Buffer.concat(markers.slice(280).map((m) => Buffer.concat([m, Buffer.from(m.toString("base64url"))])));
    await alice.sendAttachment(bob.local.username, file, { fileName: "leak.bin" });
    await carol.sendGroupAttachment(group.id, file, { caption: "minutes" });
    // Bob's first device: 133 group messages from the others, 40 from Alice, 40 transcripts of device 2's, 2 files.
    await until(received.get(bob)!, 215, 60_000);
    const withAttachment = received.get(bob)!.find((m) => m.attachment && m.conversation === alice.local.uuid);
    assert.ok(withAttachment, "the attachment arrived");
    assert.deepEqual(await bob.downloadAttachment(withAttachment.attachment!), file, "and opens byte-identical");
    const attachmentRows = await queryServerDb<{ n: number }>(server, `SELECT COUNT(*) AS n FROM "Attachment"`);
    assert.equal(Number(attachmentRows[0]!.n), 2, "two attachment blobs stored");
    assert.equal(await secretsFound(server, [...markers, ...clients.flatMap(privateKeys)]), 0);
    for (const c of clients) await c.close();
  });
});
