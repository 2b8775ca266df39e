import { describe, expect, it } from "vitest";
import { partitioning } from "../../protocol/key-hash.js";
import { type NodeEntry, nodeKey } from "../../protocol/node-map.js";
import { Router } from "../../proxy/router.js";

const node = (
  port: number,
  role: NodeEntry["role"],
  partition: number,
  balance: number,
  state: NodeEntry["state"] = "active",
): NodeEntry => ({
  host: "localhost",
  port,
  role,
  state,
  partition,
  balance,
  threadType: port,
});

describe("router", () => {
  it("spreads reads by balance weight: master 1 : slave 2 within a tight bound", () => {
    const r = new Router();
    r.update([node(1, "master", 0, 1), node(2, "slave", 0, 2), node(3, "proxy", -1, 0)]);
    const counts = new Map<number, number>();
    const n = 60_000;
    for (let i = 0; i < n; i++) {
      const picked = r.reader(`key${i}`, undefined, (i + 0.5) / n) as NodeEntry;
      counts.set(picked.port, (counts.get(picked.port) ?? 0) + 1);
    }
    expect((counts.get(1) ?? 0) / n).toBeCloseTo(1 / 3, 2);
    expect((counts.get(2) ?? 0) / n).toBeCloseTo(2 / 3, 2);
    // With Math.random: within 1.5% of the weights over 60 000 picks (about 10 standard deviations).
    const live = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const p = (r.reader("k") as NodeEntry).port;
      live.set(p, (live.get(p) ?? 0) + 1);
    }
    expect(Math.abs((live.get(2) ?? 0) / n - 2 / 3)).toBeLessThan(0.015);
  });

  it("a read retries another replica and fails only when none is left", () => {
    const r = new Router();
    r.update([node(1, "master", 0, 1), node(2, "slave", 0, 2)]);
    const first = r.reader("k", new Set(), 0.9) as NodeEntry;
    expect(first.port).toBe(2);
    const second = r.reader("k", new Set([nodeKey("localhost", 2)])) as NodeEntry;
    expect(second.port).toBe(1);
    expect(r.reader("k", new Set([nodeKey("localhost", 1), nodeKey("localhost", 2)]))).toBeUndefined();
  });

  it("writes go to the active master; a down master leaves the partition without a writer", () => {
    const r = new Router();
    r.update([node(1, "master", 0, 1), node(2, "slave", 0, 2)]);
    expect(r.writer("k")?.port).toBe(1);
    r.update([node(1, "master", 0, 1, "down"), node(2, "slave", 0, 2)]);
    expect(r.writer("k")).toBeUndefined();
    expect(r.reader("k")?.port).toBe(2);
  });

  it("preparing slaves and balance-0 slaves get no reads; a master with balance 0 still serves", () => {
    const r = new Router();
    r.update([node(1, "master", 0, 0), node(2, "slave", 0, 0), node(3, "slave", 0, 5, "prepare")]);
    expect(r.reader("k")?.port).toBe(1);
  });

  it("keys spread over partitions with Flare's resolver", () => {
    const r = new Router();
    r.update([node(1, "master", 0, 1), node(2, "master", 1, 1), node(3, "master", 2, 1)]);
    expect(r.count).toBe(3);
    // Flare's vector: test_key1 is in partition 2 of 3.
    expect(r.partitionOf("test_key1")).toBe(2);
    expect(r.writer("test_key1")?.port).toBe(3);
  });

  it("routes with the hash the index announces, and refuses one Flare does not accept", () => {
    const { algorithm, resolver } = partitioning(
      new Map([
        ["key-hash-algorithm", "crc32"],
        ["partition-modular-virtual", "4096"],
      ]),
    );
    expect(algorithm).toBe("crc32");
    const r = new Router();
    r.use(algorithm, resolver);
    r.update([node(1, "master", 0, 1), node(2, "master", 1, 1)]);
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    const simple = new Router();
    simple.update([node(1, "master", 0, 1), node(2, "master", 1, 1)]);
    expect(keys.some((k) => r.partitionOf(k) !== simple.partitionOf(k))).toBe(true);
    expect(partitioning(new Map([["key-hash-algorithm", "jenkins"]])).algorithm).toBe("jenkins");
    expect(() => partitioning(new Map([["key-hash-algorithm", "murmur"]]))).toThrow(/murmur/);
  });
});
