import { afterEach, describe, expect, it, vi } from "vitest";
import { Counters } from "../storage/counters.js";
import { MemoryEngine } from "../storage/engines/memory.js";
import { Store } from "../storage/store.js";
import { Tombstones } from "../storage/tombstones.js";

function makeStore(opts: { limitBytes?: number; tombstones?: number } = {}): Store {
  let store: Store | undefined;
  const engine = new MemoryEngine({
    limitBytes: opts.limitBytes ?? 64 * 1024 * 1024,
    onEvict: (k, item) => store?.evicted(k, item),
  });
  store = new Store(engine, new Tombstones(opts.tombstones ?? 1000), new Counters());
  return store;
}

const v = (s: string) => Buffer.from(s);
const text = (item: { value: Uint8Array } | undefined) =>
  item ? Buffer.from(item.value).toString() : undefined;

afterEach(() => {
  vi.useRealTimers();
});

describe("store semantics", () => {
  it("set/get keeps value and flags and counts versions from 1", () => {
    const s = makeStore();
    expect(s.store("set", "k", v("a"), 7, 0, 0n)).toBe("STORED");
    expect(s.get("k")).toMatchObject({ flags: 7, version: 1n });
    s.store("set", "k", v("b"), 0, 0, 0n);
    expect(s.get("k")?.version).toBe(2n);
    expect(text(s.get("k"))).toBe("b");
  });

  it("add only when absent, replace/append/prepend only when present", () => {
    const s = makeStore();
    expect(s.store("replace", "k", v("x"), 0, 0, 0n)).toBe("NOT_STORED");
    expect(s.store("append", "k", v("x"), 0, 0, 0n)).toBe("NOT_STORED");
    expect(s.store("add", "k", v("a"), 3, 0, 0n)).toBe("STORED");
    expect(s.store("add", "k", v("b"), 0, 0, 0n)).toBe("NOT_STORED");
    expect(s.store("append", "k", v("z"), 9, 0, 0n)).toBe("STORED");
    expect(s.store("prepend", "k", v("y"), 9, 0, 0n)).toBe("STORED");
    expect(text(s.get("k"))).toBe("yaz");
    expect(s.get("k")?.flags).toBe(3);
    expect(s.store("replace", "k", v("r"), 1, 0, 0n)).toBe("STORED");
    expect(s.get("k")).toMatchObject({ flags: 1, version: 4n });
  });

  it("cas compares the version and bumps it", () => {
    const s = makeStore();
    expect(s.store("cas", "k", v("a"), 0, 0, 1n)).toBe("NOT_FOUND");
    s.store("set", "k", v("a"), 0, 0, 0n);
    expect(s.store("cas", "k", v("b"), 0, 0, 5n)).toBe("EXISTS");
    expect(s.store("cas", "k", v("b"), 0, 0, 1n)).toBe("STORED");
    expect(s.get("k")?.version).toBe(2n);
    expect(s.counters).toMatchObject({ cas_misses: 1, cas_badval: 1, cas_hits: 1 });
  });

  it("versions never go back across delete, expiry, eviction of tombstones and flush_all", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const s = makeStore({ tombstones: 2 });
    s.store("set", "k", v("a"), 0, 0, 0n);
    s.store("set", "k", v("a"), 0, 0, 0n);
    expect(s.delete("k", 0, 0n)).toBe("DELETED");
    s.store("set", "k", v("a"), 0, 1, 0n);
    expect(s.get("k")?.version).toBe(3n);
    vi.advanceTimersByTime(1001);
    expect(s.get("k")).toBeUndefined();
    s.store("set", "k", v("a"), 0, 0, 0n);
    expect(s.get("k")?.version).toBe(4n);
    // Push k's tombstone out of a 2-entry cache: the floor keeps its version.
    s.delete("k", 0, 0n);
    for (const other of ["x", "y", "z"]) {
      s.store("set", other, v("1"), 0, 0, 0n);
      s.delete(other, 0, 0n);
    }
    s.store("set", "k", v("a"), 0, 0, 0n);
    expect(s.get("k")?.version).toBeGreaterThan(4n);
    const before = s.get("k")?.version ?? 0n;
    s.flush(0);
    expect(s.get("k")).toBeUndefined();
    s.store("set", "k", v("a"), 0, 0, 0n);
    expect(s.get("k")?.version).toBeGreaterThan(before);
  });

  it("an explicit version is stored exactly and must be newer than what the key had", () => {
    const s = makeStore();
    expect(s.store("set", "k", v("a"), 0, 0, 10n)).toBe("STORED");
    expect(s.get("k")?.version).toBe(10n);
    expect(s.store("set", "k", v("old"), 0, 0, 9n)).toBe("NOT_STORED");
    expect(s.store("set", "k", v("same"), 0, 0, 10n)).toBe("NOT_STORED");
    expect(s.delete("k", 0, 12n)).toBe("DELETED");
    // A replayed write older than the delete cannot resurrect the key.
    expect(s.store("set", "k", v("late"), 0, 0, 11n)).toBe("NOT_STORED");
    expect(s.get("k")).toBeUndefined();
    expect(s.store("set", "k", v("new"), 0, 0, 13n)).toBe("STORED");
  });

  it("a stale versioned delete is ignored", () => {
    const s = makeStore();
    s.store("set", "k", v("a"), 0, 0, 5n);
    expect(s.delete("k", 0, 4n)).toBe("NOT_FOUND");
    expect(text(s.get("k"))).toBe("a");
  });

  it("delete with a hold refuses add until the hold ends", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const s = makeStore();
    s.store("set", "k", v("a"), 0, 0, 0n);
    expect(s.delete("k", 2, 0n)).toBe("DELETED");
    expect(s.store("add", "k", v("b"), 0, 0, 0n)).toBe("NOT_STORED");
    vi.advanceTimersByTime(2001);
    expect(s.store("add", "k", v("b"), 0, 0, 0n)).toBe("STORED");
  });

  it("expiry: relative, absolute, negative, touch and gat", () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
    const s = makeStore();
    s.store("set", "rel", v("a"), 0, 10, 0n);
    s.store("set", "abs", v("a"), 0, 1_700_000_005, 0n);
    s.store("set", "past", v("a"), 0, 1_600_000_000, 0n);
    s.store("set", "neg", v("a"), 0, -1, 0n);
    expect(s.get("past")).toBeUndefined();
    expect(s.get("neg")).toBeUndefined();
    vi.advanceTimersByTime(5000);
    expect(s.get("abs")).toBeUndefined();
    expect(s.touch("rel", 100)).toBe(true);
    vi.advanceTimersByTime(10_000);
    expect(text(s.get("rel"))).toBe("a");
    expect(s.getAndTouch("rel", -1)).toBeDefined();
    expect(s.get("rel")).toBeUndefined();
    expect(s.touch("rel", 10)).toBe(false);
  });

  it("incr/decr: 64-bit wrap, floor at zero, non-numeric refused, flags kept", () => {
    const s = makeStore();
    expect(s.arithmetic("n", 1n, false)).toBe("NOT_FOUND");
    s.store("set", "n", v("18446744073709551615"), 5, 0, 0n);
    expect(s.arithmetic("n", 2n, false)).toBe(1n);
    expect(s.arithmetic("n", 10n, true)).toBe(0n);
    expect(s.get("n")?.flags).toBe(5);
    s.store("set", "t", v("abc"), 0, 0, 0n);
    expect(s.arithmetic("t", 1n, false)).toBe("NON_NUMERIC");
    s.store("set", "p", v("12  "), 0, 0, 0n);
    expect(s.arithmetic("p", 1n, false)).toBe(13n);
    expect(text(s.get("p"))).toBe("13");
    s.store("set", "big", v("18446744073709551616"), 0, 0, 0n);
    expect(s.arithmetic("big", 1n, false)).toBe("NON_NUMERIC");
  });

  it("flush_all with a delay clears later", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const s = makeStore();
    s.store("set", "k", v("a"), 0, 0, 0n);
    s.flush(2);
    expect(s.get("k")).toBeDefined();
    vi.advanceTimersByTime(2000);
    expect(s.get("k")).toBeUndefined();
  });

  it("the memory engine evicts least recently used items at its limit and keeps their versions", () => {
    const s = makeStore({ limitBytes: 1024 * 1024 });
    const value = Buffer.alloc(10_000, 1);
    for (let i = 0; i < 200; i++) s.store("set", `k${i}`, value, 0, 0, 0n);
    const stats = s.engine.stats();
    expect(stats.bytes).toBeLessThanOrEqual(1024 * 1024);
    expect(stats.evictions).toBeGreaterThan(90);
    expect(s.get("k0")).toBeUndefined();
    expect(s.get("k199")).toBeDefined();
    s.store("set", "k0", value, 0, 0, 0n);
    expect(s.get("k0")?.version).toBe(2n);
  });

  it("refuses an item larger than the whole memory limit with a typed error", () => {
    const s = makeStore({ limitBytes: 1024 * 1024 });
    expect(() => s.store("set", "huge", Buffer.alloc(2 * 1024 * 1024), 0, 0, 0n)).toThrow(/out of memory/);
  });
});
