/** Tombstones are bounded: the one set longest ago goes first, and its version raises the floor. */
import { describe, expect, it } from "vitest";
import { Tombstones } from "../../storage/tombstones.js";

describe("tombstones", () => {
  it("keeps the newest `limit` tombstones; a key set again moves to the back; deletes leave no trace", () => {
    const t = new Tombstones(3);
    t.set("a", 1n, 0);
    t.set("b", 2n, 0);
    t.set("c", 3n, 0);
    t.set("a", 4n, 0);
    t.delete("b");
    t.set("d", 5n, 0);
    // b was deleted: nothing went, floor unchanged.
    expect([t.size, t.floor]).toEqual([3, 0n]);
    t.set("e", 6n, 0);
    // c is now the oldest (a was set again after it).
    expect(t.get("c")).toBeUndefined();
    expect(t.floor).toBe(3n);
    expect(t.lastVersion("c")).toBe(3n);
    expect(t.get("a")?.version).toBe(4n);
    t.clear();
    expect(t.size).toBe(0);
  });

  it("under churn at the limit, the oldest goes each time and the bookkeeping stays bounded", () => {
    const limit = 1000;
    const t = new Tombstones(limit);
    for (let i = 1; i <= 200_000; i++) {
      t.set(`k${i}`, BigInt(i), 0);
      if (i % 7 === 0) t.delete(`k${i - 3}`);
      if (i % 5 === 0) t.set(`k${i - 1}`, BigInt(i), 0);
    }
    expect(t.size).toBe(limit);
    for (let i = 200_000 - 100; i <= 200_000; i++) if (i % 7 !== 4) expect(t.get(`k${i}`)).toBeDefined();
    const order = (t as unknown as { orderKeys: string[] }).orderKeys;
    expect(order.length).toBeLessThan(3 * limit + 1024 + 4096);
  });
});
