import { crc32 as crc32Of } from "node:zlib";
import { describe, expect, it } from "vitest";
import { keyHash, ModularResolver } from "../../protocol/key-hash.js";

describe("Flare key hashing and the modular resolver", () => {
  it("matches Flare's test vectors (size 1024, hint 1, virtual 4096, simple hash)", () => {
    const r = new ModularResolver();
    const parts = (key: string) => [1, 2, 3, 4, 5, 6, 7, 8].map((n) => r.resolve(keyHash(key, "simple"), n));
    expect(parts("test_key1")).toEqual([0, 0, 2, 2, 2, 5, 5, 5]);
    expect(parts("::test::key::1979")).toEqual([0, 0, 0, 0, 0, 5, 5, 5]);
    expect(parts("::test::key::19790217")).toEqual([0, 0, 2, 2, 2, 2, 2, 2]);
  });

  it("partitionOf is the resolver applied to the key's hash, and partition 0 of one", () => {
    const r = new ModularResolver();
    for (const algorithm of ["simple", "crc32", "jenkins"] as const) {
      for (const key of ["test_key1", "::test::key::1979", "a", "\xff\x80 key", "k".repeat(250)]) {
        for (let n = 1; n <= 8; n++) {
          expect(r.partitionOf(key, algorithm, n)).toBe(r.resolve(keyHash(key, algorithm), n));
        }
      }
    }
    expect(r.partitionOf("test_key1", "simple", 3)).toBe(2);
    expect(r.partitionOf("test_key1", "simple", 1)).toBe(0);
  });

  it("simple hashing reads bytes as signed chars", () => {
    expect(keyHash("\xff", "simple")).toBe(1);
    expect(keyHash("ab", "simple")).toBe(97 + 98);
  });

  it("crc32 and jenkins match zlib and libhashkit", () => {
    // zlib.crc32 read as int32 (Flare's crc32).
    expect(keyHash("test_key1", "crc32")).toBe(Math.abs(crc32Of("test_key1") | 0));
    // libhashkit_jenkins() from libhashkit.so.2 (Debian's libmemcached), read as int32 and negated
    // when negative, as Flare does. Lengths cover 0, each tail size and a key over 12 bytes.
    const libhashkit: Record<string, number> = {
      "": 3735928572,
      a: 3768813200,
      apple: 1442444624,
      test_key1: 4120781536,
      "123456789012": 2214942983,
      "1234567890123": 3321422387,
      "::test::key::1979": 1700546481,
      "::test::key::19790217": 459432108,
      "hello world, this is long": 3001480607,
    };
    for (const [key, unsigned] of Object.entries(libhashkit)) {
      expect(keyHash(key, "jenkins"), key).toBe(Math.abs(unsigned | 0));
    }
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
