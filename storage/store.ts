/**
 * The memcached command semantics, once for every engine and every front end: add/replace/cas,
 * append/prepend, incr/decr, touch, delete with Flare's hold and versions, expiry, flush_all.
 * Each command runs to completion in one tick on a synchronous engine, which is what serializes
 * commands on the same key.
 */
import { ServerError } from "../common/errors.js";
import type { Counters } from "./counters.js";
import type { Item, SyncEngine } from "./engine.js";
import { expiresAt, isExpired } from "./expiry.js";
import type { Tombstones } from "./tombstones.js";

export type StoreMode = "set" | "add" | "replace" | "append" | "prepend" | "cas";
export type StoreResult = "STORED" | "NOT_STORED" | "EXISTS" | "NOT_FOUND";
export type DeleteResult = "DELETED" | "NOT_FOUND";
export type ArithmeticResult = bigint | "NOT_FOUND" | "NON_NUMERIC";

const UINT64_MASK = (1n << 64n) - 1n;

export class Store {
  /** Versions handed out so far never exceed this; flush_all lifts the tombstone floor to it. */
  private maxVersion = 0n;
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly engine: SyncEngine,
    private readonly tombstones: Tombstones,
    readonly counters: Counters,
  ) {}

  /** A live item, or undefined; counts a get hit or miss. */
  get(key: string): Item | undefined {
    const c = this.counters;
    c.cmd_get++;
    const item = this.live(key, Date.now());
    if (item === undefined) c.get_misses++;
    else c.get_hits++;
    return item;
  }

  /** gat/gats: a live item with its expiry changed, or undefined. */
  getAndTouch(key: string, exptime: number): Item | undefined {
    const c = this.counters;
    c.cmd_get++;
    c.cmd_touch++;
    const item = this.retouch(key, exptime);
    if (item === undefined) {
      c.get_misses++;
      c.touch_misses++;
    } else {
      c.get_hits++;
      c.touch_hits++;
    }
    return item;
  }

  touch(key: string, exptime: number): boolean {
    const c = this.counters;
    c.cmd_touch++;
    const touched = this.retouch(key, exptime) !== undefined;
    if (touched) c.touch_hits++;
    else c.touch_misses++;
    return touched;
  }

  /**
   * set/add/replace/append/prepend/cas. `version` is the cas unique for `cas`; for the others a
   * non-zero version is Flare's explicit version (replication, dumps): stored exactly, and refused
   * when not newer than what the key had, so replayed or reordered writes cannot roll data back.
   */
  store(
    mode: StoreMode,
    key: string,
    value: Uint8Array,
    flags: number,
    exptime: number,
    version: bigint,
  ): StoreResult {
    const c = this.counters;
    c.cmd_set++;
    const now = Date.now();
    const item = this.live(key, now);
    let next: bigint;
    if (mode === "cas") {
      if (item === undefined) {
        c.cas_misses++;
        return "NOT_FOUND";
      }
      if (item.version !== version) {
        c.cas_badval++;
        return "EXISTS";
      }
      c.cas_hits++;
      next = item.version + 1n;
    } else {
      if (mode === "add") {
        if (item !== undefined) return "NOT_STORED";
        const t = this.tombstones.get(key);
        if (t !== undefined && t.holdUntil > now) return "NOT_STORED";
      } else if (mode !== "set" && item === undefined) {
        return "NOT_STORED";
      }
      const last = item?.version ?? this.tombstones.lastVersion(key);
      if (version !== 0n) {
        if (version <= last) return "NOT_STORED";
        next = version;
      } else {
        next = last + 1n;
      }
    }
    if (item !== undefined && (mode === "append" || mode === "prepend")) {
      const joined = mode === "append" ? concat(item.value, value) : concat(value, item.value);
      this.write(key, { value: joined, flags: item.flags, version: next, expiresAt: item.expiresAt });
    } else {
      this.write(key, { value, flags, version: next, expiresAt: expiresAt(exptime, now) });
    }
    c.total_items++;
    return "STORED";
  }

  /** incr/decr as memcached: 64-bit unsigned, incr wraps, decr stops at 0, flags and expiry kept. */
  arithmetic(key: string, delta: bigint, decrement: boolean): ArithmeticResult {
    const c = this.counters;
    const item = this.live(key, Date.now());
    if (item === undefined) {
      if (decrement) c.decr_misses++;
      else c.incr_misses++;
      return "NOT_FOUND";
    }
    const current = parseCounter(item.value);
    if (current === null) return "NON_NUMERIC";
    if (decrement) c.decr_hits++;
    else c.incr_hits++;
    const next = decrement ? (current > delta ? current - delta : 0n) : (current + delta) & UINT64_MASK;
    const value = Buffer.from(next.toString(), "latin1");
    this.write(key, { value, flags: item.flags, version: item.version + 1n, expiresAt: item.expiresAt });
    return next;
  }

  /**
   * delete, with Flare's optional hold (add/replace refused for that many seconds) and version (a
   * replicated delete older than the item is ignored).
   */
  delete(key: string, holdSeconds: number, version: bigint): DeleteResult {
    const c = this.counters;
    const now = Date.now();
    const item = this.live(key, now);
    const holdUntil = holdSeconds > 0 ? expiresAt(holdSeconds, now) : 0;
    if (item === undefined || (version !== 0n && version < item.version)) {
      if (version !== 0n && item === undefined && version > this.tombstones.lastVersion(key)) {
        this.tombstones.set(key, version, holdUntil);
        this.noteVersion(version);
      }
      c.delete_misses++;
      return "NOT_FOUND";
    }
    this.engine.delete(key);
    const last = version > item.version ? version : item.version;
    this.tombstones.set(key, last, holdUntil);
    this.noteVersion(last);
    c.delete_hits++;
    return "DELETED";
  }

  /** flush_all: everything stored now is gone, now or after `delaySeconds`. Versions keep growing. */
  flush(delaySeconds: number): void {
    this.counters.cmd_flush++;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (delaySeconds <= 0) {
      this.flushNow();
      return;
    }
    const due = expiresAt(delaySeconds, Date.now()) - Date.now();
    this.flushTimer = setTimeout(() => this.flushNow(), Math.max(0, due));
    this.flushTimer.unref();
  }

  /** Called by the engine for items it evicted: their versions must not be forgotten. */
  evicted(key: string, item: Item): void {
    this.tombstones.set(key, item.version, 0);
  }

  close(): void {
    clearTimeout(this.flushTimer);
  }

  private flushNow(): void {
    this.engine.clear();
    this.tombstones.clear();
    this.tombstones.raiseFloor(this.maxVersion);
  }

  private retouch(key: string, exptime: number): Item | undefined {
    const now = Date.now();
    const item = this.live(key, now);
    if (item === undefined) return undefined;
    const touched = {
      value: item.value,
      flags: item.flags,
      version: item.version,
      expiresAt: expiresAt(exptime, now),
    };
    this.write(key, touched);
    return touched;
  }

  /** The stored item if it has not expired; an expired one is removed and leaves its version behind. */
  private live(key: string, now: number): Item | undefined {
    const item = this.engine.get(key);
    if (item === undefined || !isExpired(item.expiresAt, now)) return item;
    this.engine.delete(key);
    this.tombstones.set(key, item.version, 0);
    this.counters.get_expired++;
    return undefined;
  }

  private write(key: string, item: Item): void {
    if (!this.engine.put(key, item)) throw new ServerError("ENGINE_FAILURE", "out of memory storing object");
    this.tombstones.delete(key);
    this.noteVersion(item.version);
  }

  private noteVersion(version: bigint): void {
    if (version > this.maxVersion) this.maxVersion = version;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = Buffer.allocUnsafe(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * memcached reads a counter with strtoull: decimal digits, optionally followed by spaces (its own
 * in-place decr pads with them), at most 2^64-1. Anything else is not a number.
 */
function parseCounter(value: Uint8Array): bigint | null {
  let end = value.length;
  while (end > 0 && value[end - 1] === 32) end--;
  if (end === 0 || end > 20) return null;
  for (let i = 0; i < end; i++) {
    const c = value[i] as number;
    if (c < 48 || c > 57) return null;
  }
  const n = BigInt(Buffer.from(value.buffer, value.byteOffset, end).toString("latin1"));
  return n > UINT64_MASK ? null : n;
}
