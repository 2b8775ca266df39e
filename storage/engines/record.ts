/**
 * The byte layout of an item in engines that store bytes (leveldb, redis): a 20-byte header
 * `flags u32 | version u64 | expiresAt f64` (big-endian), then the value.
 */
import type { Item } from "../engine.js";

export const HEADER = 20;

export function encodeItem(item: Item): Buffer {
  const out = Buffer.allocUnsafe(HEADER + item.value.length);
  out.writeUInt32BE(item.flags, 0);
  out.writeBigUInt64BE(item.version, 4);
  out.writeDoubleBE(item.expiresAt, 12);
  out.set(item.value, HEADER);
  return out;
}

export function decodeItem(raw: Buffer): Item {
  if (raw.length < HEADER) throw new Error(`corrupt record: ${raw.length} bytes`);
  return {
    flags: raw.readUInt32BE(0),
    version: raw.readBigUInt64BE(4),
    expiresAt: raw.readDoubleBE(12),
    value: raw.subarray(HEADER),
  };
}
