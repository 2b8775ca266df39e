/**
 * The reply writer: `valueOf` (a get served from an engine's own memory) writes the same bytes as
 * `value`, whatever the lengths of key, value and line, and copies the value at once, so a reply
 * held back in a slot never changes when the engine reuses that memory. `reuse` writes again from
 * the chunk's start only what comes after everything was handed over; `range` says when it keeps
 * a view.
 */
import { describe, expect, it } from "vitest";
import { ReplyBuffer } from "../../protocol/memcache/reply.js";

function bytes(out: ReplyBuffer): Buffer {
  return Buffer.concat(out.take());
}

describe("reply buffer", () => {
  it("valueOf and value write the same reply for short and long keys, values and lines", () => {
    for (const keyLength of [1, 63, 64, 65, 250]) {
      for (const valueLength of [0, 1, 63, 64, 65, 5000, 70_000]) {
        const key = "k".repeat(keyLength);
        const value = Buffer.alloc(valueLength);
        for (let i = 0; i < valueLength; i++) value[i] = (i * 131 + keyLength) & 0xff;
        const page = Buffer.concat([Buffer.from("before"), value, Buffer.from("after")]);
        const a = new ReplyBuffer();
        const b = new ReplyBuffer();
        for (const out of [a, b]) out.line(`${"x".repeat(keyLength)} line`);
        a.value(key, 4294967295, value);
        b.valueOf(key, 4294967295, page, 6, 6 + valueLength);
        for (const out of [a, b]) out.line("END");
        const expected = Buffer.concat([
          Buffer.from(`${"x".repeat(keyLength)} line\r\nVALUE ${key} 4294967295 ${valueLength}\r\n`),
          value,
          Buffer.from("\r\nEND\r\n"),
        ]);
        expect(bytes(a)).toEqual(expected);
        expect(bytes(b)).toEqual(expected);
      }
    }
  });

  it("words writes a one-key request as the string would be written, for any key length and byte", () => {
    const high = Buffer.from(Array.from({ length: 200 }, (_, i) => 0x21 + ((i * 7) % 0xde))).toString(
      "latin1",
    );
    const out = new ReplyBuffer(64);
    let expected = "";
    for (const keyLength of [1, 63, 64, 65, 200, 250]) {
      for (const key of ["k".repeat(keyLength), high.slice(0, keyLength)]) {
        for (const op of ["get", "gets"]) {
          out.words(op, key);
          expected += `${op} ${key}\r\n`;
        }
      }
    }
    expect(bytes(out)).toEqual(Buffer.from(expected, "latin1"));
  });

  it("a held-back reply keeps the value as it was when written, not a view of the engine's memory", () => {
    for (const valueLength of [10, 100, 10_000]) {
      const page = Buffer.alloc(valueLength + 8, 0x61);
      const slot = new ReplyBuffer(512);
      slot.valueOf("key", 0, page, 4, 4 + valueLength);
      page.fill(0x62);
      const reply = bytes(slot);
      expect(reply.subarray(reply.indexOf("\r\n") + 2, reply.length - 2)).toEqual(
        Buffer.alloc(valueLength, 0x61),
      );
    }
  });

  it("reuse writes the next replies where the last one was, once everything was handed over", () => {
    const out = new ReplyBuffer();
    out.line("first");
    const a = out.takeOne() as Buffer;
    expect(a.toString()).toBe("first\r\n");
    out.reuse();
    out.line("second");
    const b = out.takeOne() as Buffer;
    expect(b.toString()).toBe("second\r\n");
    // The same memory: the first reply's bytes were written over.
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(a.byteOffset);
    expect(a.toString()).toBe("second\r");
  });

  it("reuse leaves alone bytes not handed over yet, and pieces kept by reference", () => {
    const out = new ReplyBuffer();
    out.line("one");
    const one = out.takeOne() as Buffer;
    out.line("two");
    out.reuse();
    out.line("three");
    expect((out.takeOne() as Buffer).toString()).toBe("two\r\nthree\r\n");
    expect(one.toString()).toBe("one\r\n");

    const big = Buffer.alloc(5000, 0x78);
    out.line("head");
    out.bytes(big);
    out.reuse();
    out.line("tail");
    const pieces = out.take();
    expect(Buffer.concat(pieces).toString()).toBe(`head\r\n${big.toString()}tail\r\n`);
  });

  it("range copies small replies and says so; a large one is kept as a view, and it says that", () => {
    const out = new ReplyBuffer();
    const read = Buffer.alloc(10_000, 0x61);
    expect(out.range(read, 10, 110)).toBe(false);
    expect(out.range(read, 0, 8000)).toBe(true);
    read.fill(0x62);
    const all = bytes(out);
    // The copy kept what was read; the view shows what the memory holds now.
    expect(all.subarray(0, 100)).toEqual(Buffer.alloc(100, 0x61));
    expect(all.subarray(100)).toEqual(Buffer.alloc(8000, 0x62));
  });
});
