import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord } from "@signalapp/libsignal-client";
import pg from "pg";
import type { ZimClient } from "../src/index.js";
import { inbox, registerDevice, until } from "./support/devices.js";
import { startHomeserver, type Homeserver } from "./support/homeserver.js";

/** Every private key a client's store holds, serialized. */
function privateKeys(client: ZimClient): Buffer[] {
  const s = client.store;
  return [
    Buffer.from(s.getLocal()!.identityPrivateKey),
    ...s.listPreKeys("ec").map((k) => Buffer.from(PreKeyRecord.deserialize(k.record).privateKey().serialize())),
    ...s.listPreKeys("signed").map((k) => Buffer.from(SignedPreKeyRecord.deserialize(k.record).privateKey().serialize())),
    ...s.listPreKeys("kyber").map((k) => Buffer.from(KyberPreKeyRecord.deserialize(k.record).secretKey().serialize())),
  ];
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
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
    assert.ok(toBob.every((m) => m.text.includes(markers[Number(m.text.slice(1, m.text.indexOf(" ")))]!.toString("base64url"))));

    const secrets = [...markers, ...privateKeys(alice), ...privateKeys(bob)];
    const forms = secrets.flatMap((s) => [s, Buffer.from(s.toString("hex")), Buffer.from(s.toString("base64")), Buffer.from(s.toString("base64url"))]);
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
      const tables = await client.query<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, [schema]);
      for (const { table_name } of tables.rows) {
        const rows = await client.query(`SELECT * FROM "${schema}"."${table_name}"`);
        haystacks.push({ name: table_name, data: Buffer.from(JSON.stringify(rows.rows, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("latin1") : v)), "latin1") });
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
    assert.equal(hits, 0);
    await alice.close();
    await bob.close();
  });
});
