/**
 * The memory engine against a model: random writes, reads and deletes of values of every size
 * class (and values too large for a page) under a small limit. Every key it keeps holds exactly
 * what was last written, what it holds stays within the limit, and what it evicts is always older
 * than everything it keeps (LRU).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { GROWTH_SLACK, ITEM_OVERHEAD, MemoryEngine } from "../../storage/engines/memory.js";

afterEach(() => {
  vi.useRealTimers();
});

const item = (value: Buffer, version: bigint) => ({
  value,
  flags: Number(version % 1000n),
  version,
  expiresAt: 0,
});

describe("memory engine", () => {
  it("random writes, reads and deletes: exact values, bounded memory, LRU evictions", () => {
    vi.useFakeTimers();
    const sizes = fc.oneof(
      fc.integer({ min: 0, max: 200 }),
      fc.integer({ min: 200, max: 20_000 }),
      fc.integer({ min: 60_000, max: 140_000 }),
    );
    const op = fc.oneof(
      fc.record({ kind: fc.constant("put" as const), key: fc.integer({ min: 0, max: 60 }), size: sizes }),
      fc.record({ kind: fc.constant("get" as const), key: fc.integer({ min: 0, max: 60 }) }),
      fc.record({ kind: fc.constant("delete" as const), key: fc.integer({ min: 0, max: 60 }) }),
    );
    let evictions = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 50, maxLength: 400, size: "max" }), (ops) => {
        const limit = 1024 * 1024;
        const evicted: string[] = [];
        /** Every put has a version of its own: an evicted version names its key. */
        const keyOfVersion = new Map<bigint, string>();
        const engine = new MemoryEngine({
          limitBytes: limit,
          onEvict: (v) => evicted.push(keyOfVersion.get(v) as string),
        });
        const model = new Map<string, { value: Buffer; version: bigint }>();
        /** When each key was last written or read: the model's LRU order. */
        const used = new Map<string, number>();
        let version = 0n;
        let clock = 0;
        for (const o of ops) {
          // Past the engine's bump interval: every access reorders, so the model's order is exact.
          vi.advanceTimersByTime(1000);
          clock++;
          const key = `k${o.key}`;
          if (o.kind === "put") {
            const value = Buffer.alloc(o.size, Number(++version % 251n));
            keyOfVersion.set(version, key);
            if (engine.put(key, item(value, version))) {
              model.set(key, { value, version });
              used.set(key, clock);
            } else {
              // Refused (larger than the whole limit): the key holds nothing.
              model.delete(key);
            }
          } else if (o.kind === "get") {
            const got = engine.get(key);
            const want = model.get(key);
            if (want !== undefined) {
              expect(got?.version).toBe(want.version);
              expect(got?.value.equals(want.value)).toBe(true);
              used.set(key, clock);
            }
          } else {
            expect(engine.delete(key)).toBe(model.has(key));
            model.delete(key);
          }
          evictions += evicted.length;
          const gone = new Set(evicted.splice(0));
          for (const key of gone) {
            // Older than every key kept (the check must not read the engine: a read reorders it).
            const at = used.get(key) as number;
            for (const k of model.keys()) if (!gone.has(k)) expect(used.get(k) as number).toBeGreaterThan(at);
          }
          for (const key of gone) model.delete(key);
          expect(engine.stats().bytes).toBeLessThanOrEqual(limit);
          expect(engine.stats().items).toBe(model.size);
        }
        for (const [key, want] of model) expect(engine.get(key)?.value.equals(want.value)).toBe(true);
      }),
      { numRuns: 60 },
    );
    // The limit was reached, again and again: evictions were checked, not just allowed.
    expect(evictions).toBeGreaterThan(1000);
  });

  it("a full cache: every write evicts in constant time and the newest items stay", () => {
    const limit = 4 * 1024 * 1024;
    const engine = new MemoryEngine({ limitBytes: limit });
    const value = Buffer.alloc(100, 7);
    const n = 200_000;
    for (let i = 0; i < n; i++) expect(engine.put(`key:${i}`, item(value, BigInt(i + 1)))).toBe(true);
    const stats = engine.stats();
    expect(stats.bytes).toBeLessThanOrEqual(limit);
    // Key and value (about 110 bytes) in 136-byte chunks, plus the per-item overhead, in whole
    // pages (an eighth of the limit here).
    expect(stats.items).toBeGreaterThan((limit - limit / 8) / (136 + ITEM_OVERHEAD));
    expect(stats.evictions).toBe(n - stats.items);
    for (let i = n - stats.items; i < n; i++) expect(engine.get(`key:${i}`)?.version).toBe(BigInt(i + 1));
    expect(engine.get(`key:${n - stats.items - 1}`)).toBeUndefined();
  });

  it("gives a size class's pages to another class when the workload changes", () => {
    const limit = 2 * 1024 * 1024;
    const engine = new MemoryEngine({ limitBytes: limit });
    for (let i = 0; i < 50_000; i++) engine.put(`small:${i}`, item(Buffer.alloc(50), 1n));
    for (let i = 0; i < 2_000; i++)
      expect(engine.put(`big:${i}`, item(Buffer.alloc(3000, 1), 2n))).toBe(true);
    expect(engine.stats().bytes).toBeLessThanOrEqual(limit);
    // The newest big values are all there; the small ones made room.
    for (let i = 1_700; i < 2_000; i++) expect(engine.get(`big:${i}`)?.value.length).toBe(3000);
    expect(engine.get("small:0")).toBeUndefined();
  });

  it("a cache turned from small values to large ones and back keeps as many small items as before", () => {
    const limit = 4 * 1024 * 1024;
    const engine = new MemoryEngine({ limitBytes: limit });
    const small = Buffer.alloc(100, 1);
    const large = Buffer.alloc(100_000, 2);
    const n = 100_000;
    let version = 0n;
    for (let i = 0; i < n; i++) engine.put(`a:${i}`, item(small, ++version));
    const before = engine.stats().items;
    for (let i = 0; i < 500; i++) engine.put(`b:${i}`, item(large, ++version));
    // The large values took the memory the small ones had.
    expect(engine.stats().items).toBeLessThan(50);
    const first = version + 1n;
    for (let i = 0; i < n; i++) engine.put(`c:${i}`, item(small, ++version));
    const after = engine.stats();
    expect(after.items).toBeGreaterThan(before * 0.95);
    expect(after.bytes).toBeLessThanOrEqual(limit);
    for (let i = n - after.items; i < n; i++) expect(engine.get(`c:${i}`)?.version).toBe(first + BigInt(i));
  });

  it("holds no more than its limit in real memory as small items give way to large ones and back", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    // What every ArrayBuffer of the process holds (the engine's pages, buffers and typed arrays).
    const held = (): number => {
      // Backing stores are freed as the collector sweeps: collect until the figure settles.
      let last = Number.POSITIVE_INFINITY;
      for (;;) {
        gc();
        const now = process.memoryUsage().arrayBuffers;
        if (now >= last) return now;
        last = now;
      }
    };
    const limit = 16 * 1024 * 1024;
    const tiny = Buffer.alloc(1, 1);
    const large = Buffer.alloc(200_000, 2);
    const base = held();
    const engine = new MemoryEngine({ limitBytes: limit });
    // Beyond the limit: the arrays' smallest size (1 024 slots), and right after they grew, the
    // slack of 1.25 slots an item.
    const slack = (items: number) => 256 * 1024 + items * GROWTH_SLACK;
    let version = 0n;
    const phases: [string, Buffer, number][] = [
      ["tiny", tiny, 300_000],
      ["large", large, 2_000],
      ["tiny again", tiny, 300_000],
      ["large again", large, 2_000],
    ];
    for (const [name, value, n] of phases) {
      for (let i = 0; i < n; i++) engine.put(`${name}:${i}`, item(value, ++version));
      const stats = engine.stats();
      expect(stats.bytes, name).toBeLessThanOrEqual(limit);
      expect(held() - base, name).toBeLessThanOrEqual(limit + slack(stats.items));
      // Full: the limit was reached, not just respected.
      expect(stats.bytes, name).toBeGreaterThan(limit * 0.9);
    }
    await engine.close();
  });

  it("keeps exact values and LRU order while its slots are renumbered (small values, then large, and again)", () => {
    vi.useFakeTimers();
    const limit = 2 * 1024 * 1024;
    const evicted: string[] = [];
    const keyOfVersion = new Map<bigint, string>();
    const engine = new MemoryEngine({
      limitBytes: limit,
      onEvict: (v) => evicted.push(keyOfVersion.get(v) as string),
    });
    // The engine's slot count, read to show the renumbering really ran.
    const slots = (): number => (engine as unknown as { capacity: number }).capacity;
    const model = new Map<string, { value: Buffer; version: bigint }>();
    const used = new Map<string, number>();
    /** Every use in order; the oldest still current one is the oldest key kept. */
    const uses: [string, number][] = [];
    let oldestUse = 0;
    const oldestKept = (): number => {
      for (;;) {
        const [key, at] = uses[oldestUse] as [string, number];
        if (model.has(key) && used.get(key) === at) return at;
        oldestUse++;
      }
    };
    const use = (key: string, at: number) => {
      used.set(key, at);
      uses.push([key, at]);
    };
    let seed = 7;
    const random = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 4294967296;
    };
    let version = 0n;
    let shrinks = 0;
    let evictions = 0;
    let lastSlots = 0;
    for (let step = 1; step <= 60_000; step++) {
      vi.advanceTimersByTime(1000);
      const large = Math.floor(step / 10_000) % 2 === 1;
      const key = `k${Math.floor(random() * 40_000)}`;
      const r = random();
      if (r < 0.7) {
        const size = large ? 20_000 + Math.floor(random() * 40_000) : Math.floor(random() * 40);
        const value = Buffer.alloc(size, Number(++version % 251n));
        keyOfVersion.set(version, key);
        // Expiry far off, but its own per write: every field of a moved slot is checked.
        expect(engine.put(key, { ...item(value, version), expiresAt: 4e12 + Number(version) })).toBe(true);
        model.set(key, { value, version });
        use(key, step);
      } else if (r < 0.9) {
        const want = model.get(key);
        const got = engine.get(key);
        expect(got?.version).toBe(want?.version);
        if (want !== undefined) {
          expect(got?.value.equals(want.value)).toBe(true);
          expect(got?.flags).toBe(Number(want.version % 1000n));
          expect(got?.expiresAt).toBe(4e12 + Number(want.version));
          use(key, step);
        }
      } else {
        expect(engine.delete(key)).toBe(model.has(key));
        model.delete(key);
      }
      if (evicted.length > 0) {
        evictions += evicted.length;
        const gone = evicted.splice(0);
        const last = Math.max(...gone.map((k) => used.get(k) as number));
        for (const k of gone) model.delete(k);
        // What went is older than everything kept.
        if (model.size > 0) expect(last).toBeLessThan(oldestKept());
      }
      expect(engine.stats().items).toBe(model.size);
      if (slots() < lastSlots) {
        shrinks++;
        // Right after a renumbering, every item kept reads as written (a look, not a use: the
        // LRU order stays as the model has it).
        for (const [k, want] of model) {
          const got = engine.get(k, false);
          expect(got?.version).toBe(want.version);
          expect(got?.value.equals(want.value)).toBe(true);
          expect(got?.flags).toBe(Number(want.version % 1000n));
          expect(got?.expiresAt).toBe(4e12 + Number(want.version));
        }
      }
      lastSlots = slots();
    }
    expect(engine.stats().bytes).toBeLessThanOrEqual(limit);
    for (const [key, want] of model) expect(engine.get(key)?.value.equals(want.value)).toBe(true);
    // Each turn to large values renumbered the slots; evictions came in every phase.
    expect(shrinks).toBeGreaterThanOrEqual(3);
    expect(evictions).toBeGreaterThan(10_000);
  });

  it("a scan sees every item kept throughout, once, while deletes meanwhile would shrink the arrays", async () => {
    const engine = new MemoryEngine({ limitBytes: 64 * 1024 * 1024 });
    const slots = (): number => (engine as unknown as { capacity: number }).capacity;
    const n = 20_000;
    for (let i = 0; i < n; i++) engine.put(`k${i}`, item(Buffer.from(`v${i}`), BigInt(i + 1)));
    const before = slots();
    const seen = new Map<string, number>();
    let first = true;
    for await (const [key, got] of engine.scan()) {
      expect(got.value.toString()).toBe(`v${key.slice(1)}`);
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (first) {
        first = false;
        // Three quarters go: without the scan, the arrays would shrink and move the items left.
        for (let i = 0; i < n; i++) if (i % 4 !== 0) engine.delete(`k${i}`);
      }
    }
    expect(slots()).toBe(before);
    for (let i = 0; i < n; i += 4) expect(seen.get(`k${i}`), `k${i}`).toBe(1);
    // Once the scan is over, the next removal shrinks them, and every item is still found.
    engine.delete("k0");
    expect(slots()).toBeLessThan(before / 2);
    for (let i = 4; i < n; i += 4) expect(engine.get(`k${i}`)?.value.toString()).toBe(`v${i}`);
    expect(engine.stats().items).toBe(n / 4 - 1);
  });
});
