import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decodeContent, encodeContent, MemoryDeviceStore } from "../src/index.js";

describe("content padding", () => {
  it("pads to a multiple of 160 bytes and round-trips", () => {
    for (const text of ["", "hi", "x".repeat(158), "x".repeat(500), "Zimbabwe 🇿🇼"]) {
      const padded = encodeContent({ v: 1, text, timestamp: 1 });
      assert.equal(padded.length % 160, 0);
      assert.deepEqual(decodeContent(padded), { v: 1, text, timestamp: 1 });
    }
  });

  it("refuses bad padding and foreign structures", () => {
    assert.throws(() => decodeContent(new Uint8Array(160)));
    assert.throws(() => decodeContent(Buffer.from('{"v":2,"timestamp":1}\x80')));
  });
});

describe("memory device store", () => {
  it("rolls a failed transaction back", async () => {
    const store = new MemoryDeviceStore();
    store.setValue("a", "1");
    await assert.rejects(
      store.transaction(async () => {
        store.setValue("a", "2");
        store.markProcessed("e1", 1);
        throw new Error("boom");
      }),
    );
    assert.equal(store.getValue("a"), "1");
    assert.equal(store.hasProcessed("e1"), false);
  });
});
