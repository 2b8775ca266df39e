/** One connection's order through the proxy: which requests must wait for those in flight. */
import { describe, expect, it } from "vitest";
import { type Access, ConnectionOrder } from "../../proxy/connection-order.js";

const read = (...keys: string[]): NonNullable<Access> => ({ kind: "read", keys });
const write = (...keys: string[]): NonNullable<Access> => ({ kind: "write", keys });
const all: NonNullable<Access> = { kind: "all" };

describe("connection order", () => {
  it("one request in flight: a write and anything on its key wait, reads of a read do not", () => {
    const cases: [NonNullable<Access>, NonNullable<Access>, boolean][] = [
      [write("a"), read("a"), true],
      [write("a"), write("a"), true],
      [write("a"), read("b"), false],
      [read("a"), read("a"), false],
      [read("a"), write("a"), true],
      [read("a", "b"), write("c", "b"), true],
      [read("a"), all, true],
      [all, read("z"), true],
    ];
    for (const [first, next, waits] of cases) {
      const order = new ConnectionOrder();
      const end = order.begin(first);
      expect(order.mustWait(next), `${JSON.stringify(first)} then ${JSON.stringify(next)}`).toBe(waits);
      end();
      expect(order.mustWait(next)).toBe(false);
    }
  });

  it("keeps counting right as requests join the one in flight and end in any order", () => {
    const order = new ConnectionOrder();
    const endA = order.begin(write("a"));
    const endB = order.begin(read("b"));
    const endC = order.begin(read("a", "c"));
    expect(order.mustWait(read("a"))).toBe(true);
    expect(order.mustWait(write("b"))).toBe(true);
    expect(order.mustWait(read("b"))).toBe(false);
    endA();
    expect(order.mustWait(read("a"))).toBe(false);
    expect(order.mustWait(write("a"))).toBe(true);
    endC();
    expect(order.mustWait(write("a"))).toBe(false);
    expect(order.mustWait(write("b"))).toBe(true);
    // Another joins while one is still in flight, then both end: nothing is left behind.
    const endD = order.begin(write("d"));
    endB();
    expect(order.mustWait(read("d"))).toBe(true);
    expect(order.mustWait(write("b"))).toBe(false);
    endD();
    for (const a of [read("a"), write("b"), write("d"), all]) expect(order.mustWait(a)).toBe(false);
    // Alone again: the fast path takes over with nothing left in the maps.
    const endE = order.begin(read("e"));
    expect(order.mustWait(write("d"))).toBe(false);
    expect(order.mustWait(write("e"))).toBe(true);
    endE();
  });

  it("holds a request until everything before it is answered", async () => {
    const order = new ConnectionOrder();
    const end = order.begin(write("k"));
    const seen: string[] = [];
    const held = order.hold(() => seen.push("held"));
    expect(order.mustWait(read("other"))).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([]);
    end();
    await held;
    expect(seen).toEqual(["held"]);
  });
});
