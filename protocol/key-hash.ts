import { ConfigError } from "../common/errors.js";

/**
 * Flare's key -> partition mapping (flare-notes §4): a key hash, then the "modular" resolver, which
 * moves only about 1/n of the keys when a partition is added.
 */
/** zlib's CRC-32 (also in Workers, where node:zlib may be missing). */
const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32(key: string): number {
  let c = -1;
  for (let i = 0; i < key.length; i++) c = (CRC_TABLE[(c ^ key.charCodeAt(i)) & 0xff] as number) ^ (c >>> 8);
  return c ^ -1;
}

const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));

/**
 * libhashkit's `jenkins` (Bob Jenkins' lookup3 hashlittle, bytes read little-endian, initval 13),
 * which Flare calls for `key-hash-algorithm = jenkins`.
 */
function jenkins(key: string): number {
  let length = key.length;
  let a = (0xdeadbeef + length + 13) | 0;
  let b = a;
  let c = a;
  const byte = (i: number) => key.charCodeAt(i) & 0xff;
  const word = (i: number) => byte(i) | (byte(i + 1) << 8) | (byte(i + 2) << 16) | (byte(i + 3) << 24);
  let o = 0;
  while (length > 12) {
    a = (a + word(o)) | 0;
    b = (b + word(o + 4)) | 0;
    c = (c + word(o + 8)) | 0;
    a = (a - c) | 0;
    a ^= rotl(c, 4);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= rotl(a, 6);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= rotl(b, 8);
    b = (b + a) | 0;
    a = (a - c) | 0;
    a ^= rotl(c, 16);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= rotl(a, 19);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= rotl(b, 4);
    b = (b + a) | 0;
    length -= 12;
    o += 12;
  }
  if (length === 0) return c;
  // The tail: up to 12 bytes, zero-padded, into a, b and c.
  const tail = (from: number) => {
    let w = 0;
    for (let i = 0; i < 4 && from + i < o + length; i++) w |= byte(from + i) << (8 * i);
    return w;
  };
  a = (a + tail(o)) | 0;
  if (length > 4) b = (b + tail(o + 4)) | 0;
  if (length > 8) c = (c + tail(o + 8)) | 0;
  c ^= b;
  c = (c - rotl(b, 14)) | 0;
  a ^= c;
  a = (a - rotl(c, 11)) | 0;
  b ^= a;
  b = (b - rotl(a, 25)) | 0;
  c ^= b;
  c = (c - rotl(b, 16)) | 0;
  a ^= c;
  a = (a - rotl(c, 4)) | 0;
  b ^= a;
  b = (b - rotl(a, 14)) | 0;
  c ^= b;
  c = (c - rotl(b, 24)) | 0;
  return c;
}

export const HASH_ALGORITHMS = ["simple", "crc32", "jenkins"] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];

export const isHashAlgorithm = (name: string): name is HashAlgorithm =>
  (HASH_ALGORITHMS as readonly string[]).includes(name);

/**
 * Flare's `get_key_hash_value`: a C int, negated when negative. `simple` is the sum of the key's
 * bytes as signed chars; crc32 and jenkins are the checksums read as int32.
 */
export function keyHash(key: string, algorithm: HashAlgorithm): number {
  let h: number;
  if (algorithm === "crc32") {
    h = crc32(key) | 0;
  } else if (algorithm === "jenkins") {
    h = jenkins(key) | 0;
  } else {
    h = 0;
    for (let i = 0; i < key.length; i++) {
      const b = key.charCodeAt(i) & 0xff;
      h = (h + (b > 127 ? b - 256 : b)) | 0;
    }
  }
  return h < 0 ? -h : h;
}

export class ModularResolver {
  private readonly table: Int32Array[] = [];

  constructor(
    readonly size = 1024,
    readonly hint = 1,
    readonly virtual = 4096,
  ) {}

  /**
   * The partition of `key`, hashed with `algorithm`, among `count` partitions. One partition holds
   * every key: no hash is computed (twemproxy skips it for one server too).
   */
  partitionOf(key: string, algorithm: HashAlgorithm, count: number): number {
    return count <= 1 ? 0 : this.resolve(keyHash(key, algorithm), count);
  }

  /** The partition of `hash` among `count` partitions. */
  resolve(hash: number, count: number): number {
    if (count <= 1) return 0;
    return (this.row(count) as Int32Array)[hash % this.virtual] as number;
  }

  private row(n: number): Int32Array {
    const V = this.virtual;
    for (let k = this.table.length; k <= n; k++) {
      const row = new Int32Array(V);
      if (k === 0) {
        this.table.push(row);
        continue;
      }
      if (k <= this.hint) {
        for (let j = 0; j < V; j++) row[j] = j % k;
      } else {
        const prev = this.table[k - 1] as Int32Array;
        const counter = new Int32Array(k);
        for (let j = 0; j < V; j++) {
          const p = prev[j] as number;
          counter[p] = (counter[p] as number) + 1;
          row[j] = (counter[p] as number) % k === k - 1 ? k - 1 : p;
        }
      }
      this.table.push(row);
    }
    return this.table[n] as Int32Array;
  }
}

/** The key -> partition mapping the index announced. */
export function partitioning(meta: { get(name: string): string | undefined }): {
  algorithm: HashAlgorithm;
  resolver: ModularResolver;
} {
  const algorithm = meta.get("key-hash-algorithm") ?? "simple";
  if (!isHashAlgorithm(algorithm)) {
    throw new ConfigError(
      `key-hash-algorithm: the index uses ${algorithm}; flare-ts routes with ${HASH_ALGORITHMS.join(", ")}`,
    );
  }
  const num = (name: string, fallback: number) => Number(meta.get(name) ?? fallback);
  return {
    algorithm,
    resolver: new ModularResolver(
      num("partition-size", 1024),
      num("partition-modular-hint", 1),
      num("partition-modular-virtual", 4096),
    ),
  };
}
