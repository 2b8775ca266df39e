/**
 * One suite, every engine (like abstract-level's test/index.js): the memcached semantics must not
 * depend on where items live.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { Item, ItemView } from "../../storage/engine.js";
import type { Store } from "../../storage/store.js";
import { type EngineKind, type OpenedStore, openStore } from "../helpers/engines.js";
import { RedisServer, redisAvailable } from "../helpers/redis.js";

const v = (s: string) => Buffer.from(s);
const text = (item: Item | undefined) => (item ? Buffer.from(item.value).toString() : undefined);

let redis: RedisServer | undefined;
beforeAll(async () => {
  if (redisAvailable) redis = await RedisServer.start();
});
afterAll(async () => {
  await redis?.stop();
});

const kinds: EngineKind[] = ["memory", "leveldb", "redis"];

describe.each(kinds)("%s engine", (kind) => {
  const opened: OpenedStore[] = [];
  const open = async (opts: { tombstones?: number } = {}): Promise<Store> => {
    const o = await openStore(kind, { ...opts, redisUrl: redis?.url });
    opened.push(o);
    return o.store;
  };
  afterEach(async () => {
    vi.useRealTimers();
    await Promise.all(opened.splice(0).map((o) => o.close()));
  });
  /** Our clock only: engines' own timers (batching, Redis client) keep running. */
  const fakeClock = () => vi.useFakeTimers({ toFake: ["Date"], now: Date.now() });

  // Redis cases need a redis-server; without one (and outside CI, see helpers/redis.ts) they are reported, not run.
  const test = kind === "redis" && !redisAvailable ? it.skipIf(true) : it;

  test("set/get keeps value and flags and counts versions from 1", async () => {
    const s = await open();
    expect(await s.store("set", "k", v("a"), 7, 0, 0n)).toBe("STORED");
    expect(await s.get("k")).toMatchObject({ flags: 7, version: 1n });
    await s.store("set", "k", v("b"), 0, 0, 0n);
    const item = await s.get("k");
    expect(item?.version).toBe(2n);
    expect(text(item)).toBe("b");
  });

  test("binary values and keys with any byte above space survive", async () => {
    const s = await open();
    const value = Buffer.from([0, 1, 2, 255, 13, 10, 0]);
    const key = "k\xe9\xff~";
    await s.store("set", key, value, 0, 0, 0n);
    expect(Buffer.from((await s.get(key))?.value ?? [])).toEqual(value);
  });

  test("add only when absent, replace/append/prepend only when present", async () => {
    const s = await open();
    expect(await s.store("replace", "k", v("x"), 0, 0, 0n)).toBe("NOT_STORED");
    expect(await s.store("append", "k", v("x"), 0, 0, 0n)).toBe("NOT_STORED");
    expect(await s.store("add", "k", v("a"), 3, 0, 0n)).toBe("STORED");
    expect(await s.store("add", "k", v("b"), 0, 0, 0n)).toBe("NOT_STORED");
    expect(await s.store("append", "k", v("z"), 9, 0, 0n)).toBe("STORED");
    expect(await s.store("prepend", "k", v("y"), 9, 0, 0n)).toBe("STORED");
    expect(text(await s.get("k"))).toBe("yaz");
    expect((await s.get("k"))?.flags).toBe(3);
    expect(await s.store("replace", "k", v("r"), 1, 0, 0n)).toBe("STORED");
    expect(await s.get("k")).toMatchObject({ flags: 1, version: 4n });
  });

  test("cas compares the version and bumps it", async () => {
    const s = await open();
    expect(await s.store("cas", "k", v("a"), 0, 0, 1n)).toBe("NOT_FOUND");
    await s.store("set", "k", v("a"), 0, 0, 0n);
    expect(await s.store("cas", "k", v("b"), 0, 0, 5n)).toBe("EXISTS");
    expect(await s.store("cas", "k", v("b"), 0, 0, 1n)).toBe("STORED");
    expect((await s.get("k"))?.version).toBe(2n);
    expect(s.counters).toMatchObject({ cas_misses: 1, cas_badval: 1, cas_hits: 1 });
  });

  test("versions never go back across delete, expiry, forgotten tombstones and flush_all", async () => {
    fakeClock();
    const s = await open({ tombstones: 2 });
    await s.store("set", "k", v("a"), 0, 0, 0n);
    await s.store("set", "k", v("a"), 0, 0, 0n);
    expect(await s.delete("k", 0, 0n)).toBe("DELETED");
    await s.store("set", "k", v("a"), 0, 1, 0n);
    expect((await s.get("k"))?.version).toBe(3n);
    vi.advanceTimersByTime(1001);
    expect(await s.get("k")).toBeUndefined();
    await s.store("set", "k", v("a"), 0, 0, 0n);
    expect((await s.get("k"))?.version).toBe(4n);
    // Push k's tombstone out of a 2-entry cache: the floor keeps its version.
    await s.delete("k", 0, 0n);
    for (const other of ["x", "y", "z"]) {
      await s.store("set", other, v("1"), 0, 0, 0n);
      await s.delete(other, 0, 0n);
    }
    await s.store("set", "k", v("a"), 0, 0, 0n);
    const before = (await s.get("k"))?.version ?? 0n;
    expect(before).toBeGreaterThan(4n);
    // flush_all and a write in the same tick, as a pipelined client sends them.
    const flushed = s.flush(0);
    const rewritten = s.store("set", "k", v("a"), 0, 0, 0n);
    await flushed;
    expect(await rewritten).toBe("STORED");
    expect((await s.get("k"))?.version).toBeGreaterThan(before);
  });

  test("an explicit version is stored exactly and must be newer than what the key had", async () => {
    const s = await open();
    expect(await s.store("set", "k", v("a"), 0, 0, 10n)).toBe("STORED");
    expect((await s.get("k"))?.version).toBe(10n);
    expect(await s.store("set", "k", v("old"), 0, 0, 9n)).toBe("NOT_STORED");
    expect(await s.store("set", "k", v("same"), 0, 0, 10n)).toBe("NOT_STORED");
    expect(await s.delete("k", 0, 12n)).toBe("DELETED");
    // A replayed write older than the delete cannot resurrect the key.
    expect(await s.store("set", "k", v("late"), 0, 0, 11n)).toBe("NOT_STORED");
    expect(await s.get("k")).toBeUndefined();
    expect(await s.store("set", "k", v("new"), 0, 0, 13n)).toBe("STORED");
    // The first explicit version of a never-seen key is taken whatever other keys had.
    expect(await s.store("set", "fresh", v("1"), 0, 0, 2n)).toBe("STORED");
  });

  test("a stale versioned delete is ignored", async () => {
    const s = await open();
    await s.store("set", "k", v("a"), 0, 0, 5n);
    expect(await s.delete("k", 0, 4n)).toBe("NOT_FOUND");
    expect(text(await s.get("k"))).toBe("a");
  });

  test("delete with a hold refuses add until the hold ends", async () => {
    fakeClock();
    const s = await open();
    await s.store("set", "k", v("a"), 0, 0, 0n);
    expect(await s.delete("k", 2, 0n)).toBe("DELETED");
    expect(await s.store("add", "k", v("b"), 0, 0, 0n)).toBe("NOT_STORED");
    vi.advanceTimersByTime(2001);
    expect(await s.store("add", "k", v("b"), 0, 0, 0n)).toBe("STORED");
  });

  test("expiry: relative, absolute, negative, touch and gat", async () => {
    fakeClock();
    const s = await open();
    const nowS = Math.floor(Date.now() / 1000);
    await s.store("set", "rel", v("a"), 0, 10, 0n);
    await s.store("set", "abs", v("a"), 0, nowS + 5, 0n);
    await s.store("set", "past", v("a"), 0, nowS - 100, 0n);
    await s.store("set", "neg", v("a"), 0, -1, 0n);
    expect(await s.get("past")).toBeUndefined();
    expect(await s.get("neg")).toBeUndefined();
    vi.advanceTimersByTime(6000);
    expect(await s.get("abs")).toBeUndefined();
    expect(await s.touch("rel", 100)).toBe(true);
    vi.advanceTimersByTime(10_000);
    expect(text(await s.get("rel"))).toBe("a");
    expect(await s.getAndTouch("rel", -1)).toBeDefined();
    expect(await s.get("rel")).toBeUndefined();
    expect(await s.touch("rel", 10)).toBe(false);
  });

  test("a get's view (engines that keep items in memory) answers as get does", async () => {
    fakeClock();
    const s = await open();
    // Only the memory engine can show its memory; the others answer every get with a copy.
    expect(s.viewable).toBe(kind === "memory");
    await s.store("set", "a", v("hello"), 7, 0, 0n);
    await s.store("set", "e", v("soon gone"), 0, 5, 0n);
    if (!s.viewable) {
      expect(text(await s.get("a"))).toBe("hello");
      return;
    }
    const hit = s.view("a");
    expect(hit).toBeDefined();
    const shown = hit as ItemView;
    expect(shown.buf.subarray(shown.start, shown.end).toString()).toBe("hello");
    expect(shown.flags).toBe(7);
    expect(s.view("missing")).toBeUndefined();
    const before = (s.get("e") as Item).version;
    vi.advanceTimersByTime(6000);
    expect(s.view("e")).toBeUndefined();
    expect(s.counters).toMatchObject({ cmd_get: 4, get_hits: 2, get_misses: 2, get_expired: 1 });
    // The expired item is gone from the engine and leaves its version behind.
    await s.store("set", "e", v("again"), 0, 0, 0n);
    expect((s.get("e") as Item).version).toBeGreaterThan(before);
  });

  test("incr/decr: 64-bit wrap, floor at zero, non-numeric refused, flags kept", async () => {
    const s = await open();
    expect(await s.arithmetic("n", 1n, false)).toBe("NOT_FOUND");
    await s.store("set", "n", v("18446744073709551615"), 5, 0, 0n);
    expect(await s.arithmetic("n", 2n, false)).toBe(1n);
    expect(await s.arithmetic("n", 10n, true)).toBe(0n);
    expect((await s.get("n"))?.flags).toBe(5);
    await s.store("set", "t", v("abc"), 0, 0, 0n);
    expect(await s.arithmetic("t", 1n, false)).toBe("NON_NUMERIC");
    await s.store("set", "p", v("12  "), 0, 0, 0n);
    expect(await s.arithmetic("p", 1n, false)).toBe(13n);
    // memcached writes a result that fits in place, padded with spaces to the old length.
    expect(text(await s.get("p"))).toBe("13  ");
    await s.store("set", "d", v("10"), 0, 0, 0n);
    expect(await s.arithmetic("d", 1n, true)).toBe(9n);
    expect(text(await s.get("d"))).toBe("9 ");
    expect(await s.arithmetic("d", 991n, false)).toBe(1000n);
    expect(text(await s.get("d"))).toBe("1000");
    // Digits, then white space: the rest is not read (memcached's strtoull); found by the fuzzer.
    await s.store("set", "w", v("99 0"), 0, 0, 0n);
    expect(await s.arithmetic("w", 0n, false)).toBe(99n);
    expect(text(await s.get("w"))).toBe("99  ");
    await s.store("set", "w", v(" +7\r\n"), 0, 0, 0n);
    expect(await s.arithmetic("w", 1n, false)).toBe(8n);
    for (const bad of ["-1", "9a", "", " ", "0x10"]) {
      await s.store("set", "w", v(bad), 0, 0, 0n);
      expect(await s.arithmetic("w", 1n, false), bad).toBe("NON_NUMERIC");
    }
    await s.store("set", "big", v("18446744073709551616"), 0, 0, 0n);
    expect(await s.arithmetic("big", 1n, false)).toBe("NON_NUMERIC");
  });

  test("concurrent commands on one key are serialized", async () => {
    const s = await open();
    await s.store("set", "n", v("0"), 0, 0, 0n);
    await Promise.all(Array.from({ length: 200 }, () => s.arithmetic("n", 1n, false)));
    expect(text(await s.get("n"))).toBe("200");
    expect((await s.get("n"))?.version).toBe(201n);
  });

  test("flush_all in a pipeline: what came before it is gone, what comes after it sees it done", async () => {
    const s = await open();
    await s.store("set", "a", v("1"), 0, 0, 0n);
    const before = s.store("set", "b", v("2"), 0, 0, 0n);
    const flushed = s.flush(0);
    const read = s.get("a");
    const written = s.store("set", "c", v("3"), 0, 0, 0n);
    const deleted = s.delete("b", 0, 0n);
    await Promise.all([before, flushed]);
    expect(await read).toBeUndefined();
    expect(await written).toBe("STORED");
    expect(await deleted).toBe("NOT_FOUND");
    expect(text(await s.get("c"))).toBe("3");
    expect(await s.get("b")).toBeUndefined();
  });

  test("flush_all with a delay clears later", async () => {
    const s = await open();
    await s.store("set", "k", v("a"), 0, 0, 0n);
    await s.flush(1);
    expect(await s.get("k")).toBeDefined();
    await new Promise((r) => setTimeout(r, 1200));
    expect(await s.get("k")).toBeUndefined();
  });

  test("scan streams every item while writes go on", async () => {
    const s = await open();
    const n = 3000;
    await Promise.all(Array.from({ length: n }, (_, i) => s.store("set", `s${i}`, v(String(i)), i, 0, 0n)));
    const seen = new Map<string, Item>();
    let writes = 0;
    for await (const [key, item] of s.engine.scan()) {
      seen.set(key, item);
      if (writes < 100) await s.store("set", `late${writes++}`, v("x"), 0, 0, 0n);
    }
    for (let i = 0; i < n; i++) {
      const item = seen.get(`s${i}`);
      expect(item?.flags, `s${i}`).toBe(i);
      expect(text(item)).toBe(String(i));
    }
  });

  test("the expiry sweep removes items nobody reads and keeps their versions", async () => {
    fakeClock();
    const s = await open();
    await s.store("set", "gone", v("a"), 0, 1, 0n);
    await s.store("set", "kept", v("a"), 0, 0, 0n);
    vi.advanceTimersByTime(1500);
    const removed = await s.sweepExpired();
    // Redis expires items itself; the sweep is for engines that do not.
    expect(removed).toBe(kind === "redis" ? 0 : 1);
    await s.store("set", "gone", v("b"), 0, 0, 0n);
    expect((await s.get("gone"))?.version).toBe(2n);
    expect(await s.get("kept")).toBeDefined();
  });
});

describe("memory engine limits", () => {
  it("evicts least recently used items at its limit and keeps their versions", async () => {
    const { store: s, close } = await openStore("memory", { memoryLimit: "1m" });
    const value = Buffer.alloc(10_000, 1);
    for (let i = 0; i < 200; i++) s.store("set", `k${i}`, value, 0, 0, 0n);
    const stats = s.engine.stats();
    expect(stats.bytes).toBeLessThanOrEqual(1024 * 1024);
    expect(stats.evictions).toBeGreaterThan(90);
    expect(s.get("k0")).toBeUndefined();
    expect(s.get("k199")).toBeDefined();
    s.store("set", "k0", value, 0, 0, 0n);
    // Its version goes on above the one it had (1): evictions raise the floor new versions start above.
    expect((s.get("k0") as Item).version).toBeGreaterThan(1n);
    await close();
  });

  it("refuses an item larger than the whole memory limit with a typed error", async () => {
    const { store: s, close } = await openStore("memory", { memoryLimit: "1m" });
    expect(() => s.store("set", "huge", Buffer.alloc(2 * 1024 * 1024), 0, 0, 0n)).toThrow(/out of memory/);
    await close();
  });
});

describe("leveldb engine persistence", () => {
  it("a reopened database serves the same items, versions and tombstones", async () => {
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "flare-reopen-"));
    const first = await openStore("leveldb", { dataDir: dir });
    await first.store.store("set", "a", v("1"), 4, 0, 0n);
    await first.store.store("set", "a", v("2"), 4, 0, 0n);
    await first.store.store("set", "d", v("x"), 0, 0, 40n);
    await first.store.delete("d", 0, 0n);
    await first.close();
    const second = await openStore("leveldb", { dataDir: dir });
    expect(await second.store.get("a")).toMatchObject({ flags: 4, version: 2n });
    // The tombstone survived: the next write continues from 40, and a replayed older write stays dead.
    expect(await second.store.store("set", "d", v("old"), 0, 0, 39n)).toBe("NOT_STORED");
    await second.store.store("set", "d", v("y"), 0, 0, 0n);
    expect((await second.store.get("d"))?.version).toBe(41n);
    expect(second.store.engine.stats().items).toBe(2);
    await second.close();
  });
});
