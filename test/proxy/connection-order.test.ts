/** One connection's order through the proxy: which requests must wait for those in flight. */
import { describe, expect, it } from "vitest";
import { ALL, ConnectionOrder, type Keys, READ, type Touch, WRITE } from "../../proxy/connection-order.js";

type Access = readonly [Touch, Keys];
// One key as a string, as a request with one key gives it; several as an array.
const keysOf = (keys: string[]): Keys => (keys.length === 1 ? (keys[0] as string) : keys);
const read = (...keys: string[]): Access => [READ, keysOf(keys)];
const write = (...keys: string[]): Access => [WRITE, keysOf(keys)];
const all: Access = [ALL, ""];

/** `order.begin`, with the matching `end` as a function. */
const begin = (order: ConnectionOrder, access: Access): (() => void) => {
  const slot = order.begin(...access);
  return () => order.end(slot);
};

describe("connection order", () => {
  it("one request in flight: a write and anything on its key wait, reads of a read do not", () => {
    const cases: [Access, Access, boolean][] = [
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
      const end = begin(order, first);
      expect(order.mustWait(...next), `${JSON.stringify(first)} then ${JSON.stringify(next)}`).toBe(waits);
      end();
      expect(order.mustWait(...next)).toBe(false);
    }
  });

  it("keeps counting right as requests join the one in flight and end in any order", () => {
    const order = new ConnectionOrder();
    const endA = begin(order, write("a"));
    const endB = begin(order, read("b"));
    const endC = begin(order, read("a", "c"));
    expect(order.mustWait(...read("a"))).toBe(true);
    expect(order.mustWait(...write("b"))).toBe(true);
    expect(order.mustWait(...read("b"))).toBe(false);
    endA();
    expect(order.mustWait(...read("a"))).toBe(false);
    expect(order.mustWait(...write("a"))).toBe(true);
    endC();
    expect(order.mustWait(...write("a"))).toBe(false);
    expect(order.mustWait(...write("b"))).toBe(true);
    // Another joins while one is still in flight, then both end: nothing is left behind.
    const endD = begin(order, write("d"));
    endB();
    expect(order.mustWait(...read("d"))).toBe(true);
    expect(order.mustWait(...write("b"))).toBe(false);
    endD();
    for (const a of [read("a"), write("b"), write("d"), all]) expect(order.mustWait(...a)).toBe(false);
    // Alone again: the fast path takes over with nothing left in the maps.
    const endE = begin(order, read("e"));
    expect(order.mustWait(...write("d"))).toBe(false);
    expect(order.mustWait(...write("e"))).toBe(true);
    endE();
  });

  it("answers as a plain list of what is in flight would, through deep pipelines that drain", () => {
    // The model: every request in flight, checked one by one as the old rule states it.
    const conflicts = ([t1, k1]: Access, [t2, k2]: Access): boolean => {
      if (t1 === ALL || t2 === ALL) return true;
      if (t1 === READ && t2 === READ) return false;
      const a = typeof k1 === "string" ? [k1] : k1;
      const b = typeof k2 === "string" ? [k2] : k2;
      return a.some((k) => b.includes(k));
    };
    let seed = 7;
    const random = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const randomAccess = (keySpace: number): Access => {
      const keys = Array.from(
        { length: 1 + (random(4) === 0 ? random(3) : 0) },
        () => `k${random(keySpace)}`,
      );
      const r = random(3000);
      return r === 0 ? all : r < 500 ? read(...keys) : write(...keys);
    };
    const order = new ConnectionOrder();
    const inflight: { access: Access; end: () => void }[] = [];
    // Answers seen, by phase (shallow, deep) and answer (goes, waits): each must come up often.
    const seen = [
      [0, 0],
      [0, 0],
    ];
    for (let step = 0; step < 20_000; step++) {
      // Phases of shallow and deep pipelines (past the scan's limit of 32), each drained in turn.
      const deep = Math.floor(step / 2000) % 2;
      const depth = deep ? 90 : 8;
      const next = randomAccess(deep ? 1000 : 20);
      const expected = inflight.some((f) => conflicts(f.access, next));
      expect(order.mustWait(...next), `step ${step}`).toBe(expected);
      (seen[deep] as number[])[expected ? 1 : 0]++;
      if (inflight.length < depth && random(3) !== 0)
        inflight.push({ access: next, end: begin(order, next) });
      else if (inflight.length > 0) inflight.splice(random(inflight.length), 1)[0]?.end();
      if (step % 2000 === 1999) for (const f of inflight.splice(0)) f.end();
    }
    for (const n of seen.flat()) expect(n).toBeGreaterThan(1000);
    for (const a of [read("k1"), write("k1"), all]) expect(order.mustWait(...a)).toBe(false);
  });

  it("holds a request until everything before it is answered", async () => {
    const order = new ConnectionOrder();
    const end = begin(order, write("k"));
    const seen: string[] = [];
    const held = order.hold(() => seen.push("held"));
    expect(order.mustWait(...read("other"))).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([]);
    end();
    await held;
    expect(seen).toEqual(["held"]);
  });
});
