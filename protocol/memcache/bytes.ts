/**
 * Byte helpers for the hot path. Buffer's own (indexOf, latin1Write, copy) cross into C++ on every
 * call, which costs more than a JS loop over the few bytes a request line, a key or a small value
 * has; past SHORT bytes they are used as they are.
 */
const SHORT = 64;

/** Where the next LF at or after `from` (and before `end`) is, or -1. */
export function newlineAt(buf: Buffer, from: number, end = buf.length): number {
  const stop = Math.min(end, from + SHORT);
  for (let i = from; i < stop; i++) if (buf[i] === 10) return i;
  if (stop === end) return -1;
  const nl = buf.indexOf(10, stop);
  return nl < end ? nl : -1;
}

/** Where `byte` first is in bytes `from` to `end` (exclusive) of `buf`, or -1: within one line. */
export function byteIn(buf: Buffer, byte: number, from: number, end: number): number {
  for (let i = from; i < end; i++) if (buf[i] === byte) return i;
  return -1;
}

/** Writes latin1 `text` at `at`; returns the end. */
export function writeLatin1(c: Buffer, at: number, text: string): number {
  const n = text.length;
  if (n >= SHORT) return at + c.latin1Write(text, at);
  for (let i = 0; i < n; i++) c[at + i] = text.charCodeAt(i);
  return at + n;
}

/** Copies bytes `start` to `end` of `src` to `at` of `dst`; returns the end. */
export function copyBytes(src: Uint8Array, start: number, end: number, dst: Buffer, at: number): number {
  const n = end - start;
  if (n >= SHORT) dst.set(src.subarray(start, end), at);
  else for (let i = 0; i < n; i++) dst[at + i] = src[start + i] as number;
  return at + n;
}
