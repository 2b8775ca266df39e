import { describe, expect, it } from "vitest";
import { keyHash, ModularResolver } from "../protocol/key-hash.js";

describe("Flare key hashing and the modular resolver", () => {
  it("matches Flare's test vectors (size 1024, hint 1, virtual 4096, simple hash)", () => {
    const r = new ModularResolver();
    const parts = (key: string) => [1, 2, 3, 4, 5, 6, 7, 8].map((n) => r.resolve(keyHash(key, "simple"), n));
    expect(parts("test_key1")).toEqual([0, 0, 2, 2, 2, 5, 5, 5]);
    expect(parts("::test::key::1979")).toEqual([0, 0, 0, 0, 0, 5, 5, 5]);
    expect(parts("::test::key::19790217")).toEqual([0, 0, 2, 2, 2, 2, 2, 2]);
  });

  it("simple hashing reads bytes as signed chars", () => {
    expect(keyHash("\xff", "simple")).toBe(1);
    expect(keyHash("ab", "simple")).toBe(97 + 98);
  });

  it("growing from n-1 to n partitions moves keys only into the new partition", () => {
    const r = new ModularResolver();
    for (let n = 2; n <= 6; n++) {
      for (let h = 0; h < 4096; h++) {
        const before = r.resolve(h, n - 1);
        const after = r.resolve(h, n);
        expect(after === before || after === n - 1).toBe(true);
      }
    }
  });
});
