import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDeviceStore, type StoredMessage } from "../src/index.js";

const uuid = "b0b00000-0000-4000-8000-00000000000b";
const record = (n: number): Uint8Array<ArrayBuffer> => new Uint8Array([n, n, n]) as Uint8Array<ArrayBuffer>;
const message = (id: string): StoredMessage => ({
  id,
  peer: uuid,
  direction: "in",
  senderDeviceId: 1,
  text: id,
  timestamp: 1,
  storedAt: 1,
});
const storePath = (): string => join(mkdtempSync(join(tmpdir(), "zimchat-store-")), "device.db");

describe("SQLite device store", () => {
  it("holds a transaction's writes until its commit, and a rolled-back savepoint drops only its own", async () => {
    const path = storePath();
    const store = new SqliteDeviceStore(path);
    await store.transaction(async () => {
      store.saveSession(`${uuid}.1`, record(1));
      store.markProcessed("e1", 1);
      store.addMessage(message("m1"));
      await assert.rejects(
        store.transaction(async () => {
          store.saveSession(`${uuid}.1`, record(2));
          store.saveSession(`${uuid}.2`, record(2));
          store.markProcessed("e2", 2);
          store.addMessage(message("m2"));
          assert.deepEqual(store.getSession(`${uuid}.1`), record(2), "seen inside the savepoint");
          assert.deepEqual(store.sessionDevices(uuid), [1, 2]);
          assert.equal(store.hasProcessed("e2"), true);
          throw new Error("refused");
        }),
      );
      await store.transaction(async () => {
        store.deleteSession(`${uuid}.1`);
        store.saveSession(`${uuid}.3`, record(3));
        store.addMessage(message("m3"));
      });
      assert.equal(store.getSession(`${uuid}.1`), null, "deleted by the released savepoint");
      assert.deepEqual(store.sessionDevices(uuid), [3]);
      assert.equal(store.hasProcessed("e1"), true);
      assert.equal(store.hasProcessed("e2"), false, "rolled back with its savepoint");
      assert.deepEqual(
        store.messages(uuid).map((m) => m.id),
        ["m1", "m3"],
      );
    });
    store.close();
    const reopened = new SqliteDeviceStore(path);
    assert.equal(reopened.getSession(`${uuid}.1`), null);
    assert.deepEqual(reopened.getSession(`${uuid}.3`), record(3));
    assert.equal(reopened.getSession(`${uuid}.2`), null);
    assert.deepEqual(reopened.sessionDevices(uuid), [3]);
    assert.equal(reopened.hasProcessed("e1"), true);
    assert.equal(reopened.hasProcessed("e2"), false);
    assert.deepEqual(
      reopened.messages(uuid).map((m) => m.id),
      ["m1", "m3"],
    );
    reopened.close();
  });

  it("a failed transaction leaves nothing, and clearing sessions in a rolled-back savepoint keeps them", async () => {
    const store = new SqliteDeviceStore(storePath());
    store.saveSession(`${uuid}.1`, record(1));
    await assert.rejects(
      store.transaction(async () => {
        store.saveSession(`${uuid}.2`, record(2));
        store.setValue("k", "v");
        throw new Error("refused");
      }),
    );
    assert.equal(store.getValue("k"), null, "the cache forgot the rolled-back value");
    assert.deepEqual(store.sessionDevices(uuid), [1]);
    await store.transaction(async () => {
      store.saveSession(`${uuid}.2`, record(2));
      await assert.rejects(
        store.transaction(async () => {
          store.clearSessions();
          assert.deepEqual(store.sessionDevices(uuid), []);
          assert.equal(store.getSession(`${uuid}.2`), null);
          throw new Error("refused");
        }),
      );
      assert.deepEqual(store.sessionDevices(uuid), [1, 2]);
      await store.transaction(async () => {
        store.clearSessions();
        store.saveSession(`${uuid}.4`, record(4));
      });
    });
    assert.deepEqual(store.sessionDevices(uuid), [4]);
    assert.equal(store.getSession(`${uuid}.1`), null);
    store.close();
  });

  it("sees what another connection to the same file committed", async () => {
    const path = storePath();
    const store = new SqliteDeviceStore(path);
    store.setValue("k", "old");
    assert.equal(store.getValue("k"), "old");
    const other = new SqliteDeviceStore(path);
    await other.transaction(async () => other.setValue("k", "new"));
    other.close();
    assert.equal(store.getValue("k"), "new");
    store.close();
  });

  it("serializes a session saved as a record object once, at the commit, and hands the object back", async () => {
    const path = storePath();
    const store = new SqliteDeviceStore(path);
    let serialized = 0;
    const source = (n: number): { serialize(): Uint8Array<ArrayBuffer> } => ({
      serialize: () => {
        serialized++;
        return record(n);
      },
    });
    const last = source(3);
    await store.transaction(async () => {
      store.saveSessionRecord(`${uuid}.1`, source(1));
      store.saveSessionRecord(`${uuid}.1`, source(2));
      await assert.rejects(
        store.transaction(async () => {
          store.saveSessionRecord(`${uuid}.1`, source(9));
          throw new Error("refused");
        }),
      );
      store.saveSessionRecord(`${uuid}.1`, last);
      assert.equal(store.getSessionRecord(`${uuid}.1`), last, "the held object, not parsed again");
      assert.deepEqual(store.sessionDevices(uuid), [1]);
      assert.equal(serialized, 0, "nothing serialized before the commit");
    });
    assert.equal(serialized, 1, "the last record, once");
    assert.equal(store.getSessionRecord(`${uuid}.1`), last, "after the commit too");
    assert.deepEqual(store.getSession(`${uuid}.1`), record(3));
    // Outside a transaction it is written at once.
    store.saveSessionRecord(`${uuid}.2`, source(4));
    assert.equal(serialized, 2);
    store.close();
    const reopened = new SqliteDeviceStore(path);
    assert.deepEqual(reopened.getSessionRecord(`${uuid}.1`), record(3), "a new store reads bytes");
    assert.deepEqual(reopened.getSession(`${uuid}.2`), record(4));
    reopened.close();
  });
});
