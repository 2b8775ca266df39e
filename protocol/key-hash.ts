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

export type HashAlgorithm = "simple" | "crc32";

/** `simple`: the sum of the key's bytes as signed chars, as a C int, made non-negative. */
export function keyHash(key: string, algorithm: HashAlgorithm): number {
  let h: number;
  if (algorithm === "crc32") {
    h = crc32(key) | 0;
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
