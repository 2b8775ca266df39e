/**
 * Reply writer: collects the replies to one packet of requests so the connection sends them with
 * one write (syscalls are the expensive part here). Small pieces are copied into a shared chunk;
 * large values are referenced, not copied.
 */
import { copyBytes, writeLatin1 } from "./bytes.js";

const CHUNK = 16 * 1024;
/** Values at least this big are sent by reference instead of being copied. */
const BY_REFERENCE = 4 * 1024;
const CRLF = Buffer.from("\r\n");

const NONE = Buffer.alloc(0);

const VALUE_ = Buffer.from("VALUE ");

export class ReplyBuffer {
  /** Allocated on first use: a reply held back in a slot is often one small line. */
  private chunk: Buffer = NONE;
  /** Bytes of `chunk` before `start` were handed over; those up to `used` are collected. */
  private start = 0;
  private used = 0;

  /** `chunkSize`: a connection's buffer takes big packets of replies; a slot's, one reply. */
  constructor(private readonly chunkSize = CHUNK) {}
  /** Chunk pieces and referenced buffers before `chunk`, in order. */
  private done: Buffer[] = [];

  get empty(): boolean {
    return this.used === this.start && this.done.length === 0;
  }

  /** Writes `text` and CRLF; `text` is latin1 (keys are kept as latin1 strings: one char, one byte). */
  line(text: string): void {
    const need = text.length + 2;
    if (this.used + need > this.chunk.length) this.grow(need);
    const c = this.chunk;
    let at = this.used;
    at = writeLatin1(c, at, text);
    c[at++] = 13;
    c[at++] = 10;
    this.used = at;
  }

  /** Writes `first`, a space, `second` and CRLF (a one-key request, `get <key>`): no string is built. */
  words(first: string, second: string): void {
    const need = first.length + second.length + 3;
    if (this.used + need > this.chunk.length) this.grow(need);
    const c = this.chunk;
    let at = writeLatin1(c, this.used, first);
    c[at++] = 32;
    at = writeLatin1(c, at, second);
    c[at++] = 13;
    c[at++] = 10;
    this.used = at;
  }

  /**
   * `VALUE <key> <flags> <bytes>[ <cas>]` + data block, written straight into the chunk: the
   * reply of every get hit, so no string is built for it.
   */
  value(key: string, flags: number, data: Uint8Array, cas?: bigint): void {
    this.valueLine(key, flags, data.length, cas);
    this.bytes(data);
    this.bytes(CRLF);
  }

  /**
   * `value` for a value that is bytes `start` to `end` of memory someone else owns and may reuse
   * (an engine's page): it is copied here and now, never kept by reference.
   */
  valueOf(key: string, flags: number, buf: Buffer, start: number, end: number): void {
    const n = end - start;
    this.valueLine(key, flags, n, undefined);
    if (this.used + n + 2 > this.chunk.length) this.grow(n + 2);
    const c = this.chunk;
    let at = copyBytes(buf, start, end, c, this.used);
    c[at++] = 13;
    c[at++] = 10;
    this.used = at;
  }

  private valueLine(key: string, flags: number, n: number, cas: bigint | undefined): void {
    const casText = cas === undefined ? "" : cas.toString();
    const need = 6 + key.length + 24 + casText.length + 2;
    if (this.used + need > this.chunk.length) this.grow(need);
    const c = this.chunk;
    let at = this.used;
    at = copyBytes(VALUE_, 0, VALUE_.length, c, at);
    at = writeLatin1(c, at, key);
    c[at++] = 32;
    at = writeDigits(c, at, flags);
    c[at++] = 32;
    at = writeDigits(c, at, n);
    if (cas !== undefined) {
      c[at++] = 32;
      at = writeLatin1(c, at, casText);
    }
    c[at++] = 13;
    c[at++] = 10;
    this.used = at;
  }

  bytes(data: Uint8Array): void {
    if (data.length >= BY_REFERENCE) {
      this.seal();
      this.done.push(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length));
      return;
    }
    if (this.used + data.length > this.chunk.length) this.grow(data.length);
    this.chunk.set(data, this.used);
    this.used += data.length;
  }

  /**
   * Bytes `start` to `end` of `data`, without making a view of them first. Returns whether a view
   * of `data` is kept (a large value, sent by reference): then its memory must not be reused.
   */
  range(data: Buffer, start: number, end: number): boolean {
    const n = end - start;
    if (n >= BY_REFERENCE) {
      this.bytes(data.subarray(start, end));
      return true;
    }
    if (this.used + n > this.chunk.length) this.grow(n);
    this.used = copyBytes(data, start, end, this.chunk, this.used);
    return false;
  }

  /** Appends everything another buffer holds (used to release replies that waited their turn). */
  append(other: ReplyBuffer): void {
    // Small pieces are copied: many tiny buffers would make one write a long writev.
    for (const piece of other.take()) this.bytes(piece);
  }

  /** Hands over the collected bytes and starts afresh; the returned buffers are never reused. */
  take(): Buffer[] {
    this.seal();
    const out = this.done;
    this.done = [];
    return out;
  }

  /**
   * The collected bytes when they are one piece (a packet's replies usually are), handed over as
   * `take` would; undefined when there are none or several (then `take`). No array is made.
   */
  takeOne(): Buffer | undefined {
    if (this.done.length > 0 || this.used === this.start) return undefined;
    const piece = this.chunk.subarray(this.start, this.used);
    this.handedOver();
    return piece;
  }

  /**
   * Everything handed over has left (the kernel took it; no view of it is held): the chunk is
   * written again from its start, so a connection's replies keep landing in memory the cache
   * holds instead of walking through fresh chunks.
   */
  reuse(): void {
    if (this.used === this.start && this.done.length === 0) this.start = this.used = 0;
  }

  private seal(): void {
    if (this.used === this.start) return;
    this.done.push(this.chunk.subarray(this.start, this.used));
    this.handedOver();
  }

  private handedOver(): void {
    this.start = this.used;
    if (this.chunk.length - this.used < 256) {
      this.chunk = NONE;
      this.start = this.used = 0;
    }
  }

  private grow(need: number): void {
    this.seal();
    this.chunk = Buffer.allocUnsafe(Math.max(this.chunkSize, need));
    this.start = this.used = 0;
  }
}

/** Writes `n` (a non-negative integer) in decimal at `at`; returns the end. */
function writeDigits(c: Buffer, at: number, n: number): number {
  if (n < 10) {
    c[at] = 48 + n;
    return at + 1;
  }
  let end = at;
  for (let x = n; x > 0; x = Math.floor(x / 10)) end++;
  for (let i = end - 1, x = n; i >= at; i--, x = Math.floor(x / 10)) c[i] = 48 + (x % 10);
  return end;
}
