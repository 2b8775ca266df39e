/**
 * The memcached command semantics, once for every engine and every front end: add/replace/cas,
 * append/prepend, incr/decr, touch, delete with Flare's hold and versions, expiry, flush_all.
 *
 * Each command reads its key, decides, and writes. On a synchronous engine (memory, leveldb) that
 * happens in one tick, which serializes commands on a key for free; the reply then waits only for
 * durability when the engine has writes in flight. On an asynchronous engine (redis) commands on
 * the same key queue behind each other (KeyLocks), so a read-modify-write is never interleaved.
 */
import { ServerError } from "../common/errors.js";
import { strtoull } from "../protocol/memcache/numbers.js";
import type { Counters } from "./counters.js";
import type { Engine, Item, ItemView, SyncEngine } from "./engine.js";
import { expiresAt, isExpired } from "./expiry.js";
import { KeyLocks } from "./key-locks.js";
import type { Tombstones } from "./tombstones.js";

export type StoreMode = "set" | "add" | "replace" | "append" | "prepend" | "cas";
export type StoreResult = "STORED" | "NOT_STORED" | "EXISTS" | "NOT_FOUND";
export type DeleteResult = "DELETED" | "NOT_FOUND" | "EXISTS";
export type ArithmeticResult = bigint | "NOT_FOUND" | "NON_NUMERIC";
export type MaybePromise<T> = T | Promise<T>;

/** What a command run through `Store.transact` may do to its key, once. */
export interface StoreTx {
  /**
   * The version a new write of the key takes: the next after what it had; or `explicit` when that
   * is newer than anything the key had (else undefined: versions never go back).
   */
  version(item: Item | undefined, explicit?: bigint): bigint | undefined;
  /** Stores the item; `expiryOnly` when only its expiry changed (the version stays). */
  put(item: Item, expiryOnly?: boolean): void;
  /** Deletes the item; the key keeps `version`. */
  remove(version: bigint): void;
  /** An add is refused: a delete's hold (Flare) still runs. */
  held(): boolean;
}

const UINT64_MASK = (1n << 64n) - 1n;

/** Whether a store of `mode` builds on the value it replaces (the others need its other fields only). */
function joinsValue(mode: StoreMode): boolean {
  return mode === "append" || mode === "prepend";
}

/** A write a command decided on; applied after the decision (at once on a synchronous engine). */
type Staged = { put: Item; expiryOnly: boolean } | { remove: bigint; holdUntil: number } | undefined;

/**
 * Told of every write applied, in order (replication): an item stored, or its removal (null) with
 * the version it leaves; `expiryOnly` when only its expiry changed (touch, gat): the version stays,
 * so a replica must take it as a touch, not as a newer write.
 */
export type AppliedListener = (key: string, item: Item | null, version: bigint, expiryOnly: boolean) => void;

export class Store {
  /** Versions handed out so far never exceed this; flush_all lifts the tombstone floor to it. */
  private maxVersion = 0n;
  private flushTimer: NodeJS.Timeout | undefined;
  private staged: Staged;
  private readonly locks = new KeyLocks();
  /** Told of every write applied (item) and deletion (null), with the version: replication. */
  onApplied: AppliedListener | undefined;

  constructor(
    readonly engine: Engine,
    private readonly tombstones: Tombstones,
    readonly counters: Counters,
  ) {
    this.maxVersion = tombstones.floor;
    this.viewable = engine.sync && engine.view !== undefined;
  }

  /** A live item, or undefined; counts a get hit or miss. */
  get(key: string): MaybePromise<Item | undefined> {
    const engine = this.engine;
    if (engine.sync) return this.counted(this.liveSync(key, Date.now()));
    return this.locks.run(key, async () => this.counted(await this.liveAsync(key, Date.now())));
  }

  /** Whether `view` may be used: the engine answers at once, from memory it can show. */
  readonly viewable: boolean;

  /**
   * `get` for a reply written at once (only when `viewable`): the live item as a view of the
   * engine's memory, valid until the next call on the store. No item is made, no value copied.
   */
  view(key: string): ItemView | undefined {
    const v = (this.engine as SyncEngine).view?.(key);
    if (v === undefined || v.expiresAt === 0) return this.counted(v);
    const now = Date.now();
    if (!isExpired(v.expiresAt, now)) return this.counted(v);
    // Removed as a get removes it, leaving its version behind; its value is not copied out for that.
    this.liveSync(key, now, false, false);
    return this.counted<ItemView>(undefined);
  }

  /** gat/gats: a live item with its expiry changed, or undefined. */
  getAndTouch(key: string, exptime: number): MaybePromise<Item | undefined> {
    const c = this.counters;
    c.cmd_touch++;
    return this.run(key, (item, now) => {
      c.cmd_get++;
      if (item === undefined) {
        c.get_misses++;
        c.touch_misses++;
        return undefined;
      }
      c.get_hits++;
      c.touch_hits++;
      return this.retouch(key, item, exptime, now);
    });
  }

  touch(key: string, exptime: number): MaybePromise<boolean> {
    const c = this.counters;
    c.cmd_touch++;
    return this.run(key, (item, now) => {
      if (item === undefined) {
        c.touch_misses++;
        return false;
      }
      c.touch_hits++;
      this.retouch(key, item, exptime, now);
      return true;
    });
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
  ): MaybePromise<StoreResult> {
    return this.run(
      key,
      (item, now) => {
        const r = this.decideStore(mode, key, item, value, flags, exptime, version, now);
        return typeof r === "string" ? r : "STORED";
      },
      false,
      joinsValue(mode),
    );
  }

  /** As `store`, but a success returns the stored item (the HTTP API answers with its version). */
  storeItem(
    mode: StoreMode,
    key: string,
    value: Uint8Array,
    flags: number,
    exptime: number,
    version: bigint,
  ): MaybePromise<Item | Exclude<StoreResult, "STORED">> {
    return this.run(
      key,
      (item, now) => this.decideStore(mode, key, item, value, flags, exptime, version, now),
      false,
      joinsValue(mode),
    );
  }

  /**
   * incr/decr as memcached: 64-bit unsigned, incr wraps, decr stops at 0, flags and expiry kept,
   * a shorter result padded with spaces to the old value's length.
   */
  arithmetic(key: string, delta: bigint, decrement: boolean): MaybePromise<ArithmeticResult> {
    const c = this.counters;
    return this.run(
      key,
      (item) => {
        if (item === undefined) {
          if (decrement) c.decr_misses++;
          else c.incr_misses++;
          return "NOT_FOUND";
        }
        const counted = applyDelta(item, delta, decrement);
        if (counted === null) return "NON_NUMERIC";
        if (decrement) c.decr_hits++;
        else c.incr_hits++;
        this.write(key, { ...counted.item, version: nextVersion(key, item.version) });
        return counted.next;
      },
      false,
    );
  }

  /**
   * delete, with Flare's optional hold (add/replace refused for that many seconds) and version (a
   * replicated delete older than the item is ignored).
   */
  /** `expect`: delete only the item of this version (HTTP If-Match), else EXISTS. */
  delete(key: string, holdSeconds: number, version: bigint, expect?: bigint): MaybePromise<DeleteResult> {
    const c = this.counters;
    return this.run(
      key,
      (item, now) => {
        const holdUntil = holdSeconds > 0 ? expiresAt(holdSeconds, now) : 0;
        if (expect !== undefined && item !== undefined && item.version !== expect) return "EXISTS";
        if (item === undefined || (version !== 0n && version < item.version)) {
          // A versioned delete of an absent key still records the version: a late older write stays dead.
          if (item === undefined && version > (this.tombstones.get(key)?.version ?? 0n)) {
            this.tombstones.set(key, version, holdUntil);
            this.noteVersion(version);
          }
          c.delete_misses++;
          return "NOT_FOUND";
        }
        this.remove(key, version > item.version ? version : item.version, holdUntil);
        c.delete_hits++;
        return "DELETED";
      },
      false,
    );
  }

  /**
   * Runs a command whose semantics live elsewhere (the meta commands) as every command here runs:
   * `decide` sees the live item (a client's read when `access`, else a look that leaves it as it
   * is) and writes or removes it at most once through `tx`.
   */
  transact<R>(
    key: string,
    access: boolean,
    decide: (item: Item | undefined, now: number, tx: StoreTx) => R,
  ): MaybePromise<R> {
    return this.run(
      key,
      (item, now) => {
        this.txKey = key;
        this.txNow = now;
        return decide(item, now, this.tx);
      },
      access,
    );
  }

  /** The key and time of the transaction deciding now (commands decide one at a time, at once). */
  private txKey = "";
  private txNow = 0;

  private readonly tx: StoreTx = {
    version: (item, explicit) => {
      const key = this.txKey;
      if (explicit === undefined) return nextVersion(key, item?.version ?? this.tombstones.lastVersion(key));
      return explicit > (item?.version ?? this.tombstones.get(key)?.version ?? 0n) ? explicit : undefined;
    },
    put: (item, expiryOnly = false) => {
      this.write(this.txKey, item, expiryOnly);
      if (!expiryOnly) this.counters.total_items++;
    },
    remove: (version) => this.remove(this.txKey, version, 0),
    held: () => {
      const t = this.tombstones.get(this.txKey);
      return t !== undefined && t.holdUntil > this.txNow;
    },
  };

  /** Whether the engine answers within `timeoutMs`: a frozen or unreachable backend counts as down. */
  healthy(timeoutMs: number): MaybePromise<boolean> {
    let answer: boolean | Promise<boolean>;
    try {
      answer = this.engine.healthy();
    } catch {
      return false;
    }
    if (!(answer instanceof Promise)) return answer;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      answer.then(
        (ok) => {
          clearTimeout(timer);
          resolve(ok);
        },
        () => {
          clearTimeout(timer);
          resolve(false);
        },
      );
    });
  }

  /** flush_all: everything stored now is gone, now or after `delaySeconds`. Versions keep growing. */
  flush(delaySeconds: number): MaybePromise<void> {
    this.counters.cmd_flush++;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (delaySeconds <= 0) return this.flushNow();
    const due = expiresAt(delaySeconds, Date.now()) - Date.now();
    this.flushTimer = setTimeout(
      () => {
        Promise.resolve(this.flushNow()).catch(() => {});
      },
      Math.max(0, due),
    );
    this.flushTimer.unref();
  }

  /**
   * Removes expired items that nobody asked for (engines that do not expire on their own), each as
   * a lazy expiry would: the key keeps its version. Returns how many went.
   */
  async sweepExpired(): Promise<number> {
    const engine = this.engine;
    if (!engine.sync) return 0;
    let removed = 0;
    for await (const [key, item] of engine.scan()) {
      const now = Date.now();
      if (!isExpired(item.expiresAt, now)) continue;
      // Look again: the scan may be older than a write since.
      if (this.liveSync(key, now) === undefined) {
        removed++;
        this.counters.expired_unfetched++;
      }
    }
    await engine.settled();
    return removed;
  }

  close(): void {
    clearTimeout(this.flushTimer);
  }

  private decideStore(
    mode: StoreMode,
    key: string,
    item: Item | undefined,
    value: Uint8Array,
    flags: number,
    exptime: number,
    version: bigint,
    now: number,
  ): Item | Exclude<StoreResult, "STORED"> {
    const c = this.counters;
    c.cmd_set++;
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
      next = nextVersion(key, item.version);
      c.cas_hits++;
    } else {
      if (mode === "add") {
        if (item !== undefined) return "NOT_STORED";
        const t = this.tombstones.get(key);
        if (t !== undefined && t.holdUntil > now) return "NOT_STORED";
      } else if (mode !== "set" && item === undefined) {
        return "NOT_STORED";
      }
      if (version !== 0n) {
        // Only what this key itself had counts: the floor of forgotten keys must not refuse a
        // replica's first write of a key.
        if (version <= (item?.version ?? this.tombstones.get(key)?.version ?? 0n)) return "NOT_STORED";
        next = version;
      } else {
        next = nextVersion(key, item?.version ?? this.tombstones.lastVersion(key));
      }
    }
    let stored: Item;
    if (item !== undefined && (mode === "append" || mode === "prepend")) {
      const joined = mode === "append" ? concat(item.value, value) : concat(value, item.value);
      stored = { value: joined, flags: item.flags, version: next, expiresAt: item.expiresAt };
    } else {
      stored = { value, flags, version: next, expiresAt: expiresAt(exptime, now) };
    }
    this.write(key, stored);
    c.total_items++;
    return stored;
  }

  /**
   * Runs one command on `key`: `decide` sees the live item and may `write` or `remove` once.
   * Returns synchronously when the engine is synchronous and nothing waits for durability.
   */
  private run<R>(
    key: string,
    decide: (item: Item | undefined, now: number) => R,
    access = true,
    withValue = true,
  ): MaybePromise<R> {
    const engine = this.engine;
    if (engine.sync) {
      const now = Date.now();
      const result = decide(this.liveSync(key, now, access, withValue), now);
      const durable = engine.settled();
      return durable === undefined ? result : durable.then(() => result);
    }
    return this.locks.run(key, async () => {
      const now = Date.now();
      const item = await this.liveAsync(key, now, access);
      this.staged = undefined;
      const result = decide(item, now);
      const staged = this.staged as Staged;
      this.staged = undefined;
      if (staged !== undefined) {
        if ("put" in staged) {
          await engine.put(key, staged.put);
          this.onApplied?.(key, staged.put, staged.put.version, staged.expiryOnly);
        } else {
          await engine.delete(key);
          this.tombstones.set(key, staged.remove, staged.holdUntil);
          this.onApplied?.(key, null, staged.remove, false);
        }
      }
      return result;
    });
  }

  private counted<T>(found: T | undefined): T | undefined {
    const c = this.counters;
    c.cmd_get++;
    if (found === undefined) c.get_misses++;
    else c.get_hits++;
    return found;
  }

  /**
   * The floor rises before anything is cleared, so a write right after cannot reuse a version. On
   * an asynchronous engine the flush waits for the commands before it, and those after wait for it.
   */
  private flushNow(): MaybePromise<void> {
    const clear = (): MaybePromise<void> => {
      this.tombstones.raiseFloor(this.maxVersion);
      this.tombstones.clear();
      return this.engine.clear();
    };
    return this.engine.sync ? clear() : this.locks.all(async () => clear());
  }

  private retouch(key: string, item: Item, exptime: number, now: number): Item {
    const touched = {
      value: item.value,
      flags: item.flags,
      version: item.version,
      expiresAt: expiresAt(exptime, now),
      // A touch is a client's read of the item.
      fetched: true,
    };
    this.write(key, touched, true);
    return touched;
  }

  /** The stored item if it has not expired; an expired one is removed and leaves its version behind. */
  private liveSync(key: string, now: number, access = true, withValue = true): Item | undefined {
    const engine = this.engine;
    if (!engine.sync) throw new Error("liveSync on an asynchronous engine");
    const item = engine.get(key, access, withValue);
    if (item === undefined || !isExpired(item.expiresAt, now)) return item;
    engine.delete(key);
    this.tombstones.set(key, item.version, 0);
    this.counters.get_expired++;
    return undefined;
  }

  private async liveAsync(key: string, now: number, access = true): Promise<Item | undefined> {
    const engine = this.engine;
    if (engine.sync) return this.liveSync(key, now, access);
    const item = await engine.get(key);
    if (item === undefined || !isExpired(item.expiresAt, now)) return item;
    await engine.delete(key);
    this.tombstones.set(key, item.version, 0);
    this.counters.get_expired++;
    return undefined;
  }

  private write(key: string, item: Item, expiryOnly = false): void {
    const engine = this.engine;
    if (engine.sync) {
      if (!engine.put(key, item)) throw new ServerError("ENGINE_FAILURE", "out of memory storing object");
      this.tombstones.delete(key);
      this.onApplied?.(key, item, item.version, expiryOnly);
    } else {
      this.staged = { put: item, expiryOnly };
      this.tombstones.delete(key);
    }
    this.noteVersion(item.version);
  }

  private remove(key: string, version: bigint, holdUntil: number): void {
    const engine = this.engine;
    if (engine.sync) {
      engine.delete(key);
      this.tombstones.set(key, version, holdUntil);
      this.onApplied?.(key, null, version, false);
    } else {
      this.staged = { remove: version, holdUntil };
    }
    this.noteVersion(version);
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
 * incr/decr of an item as memcached does them: 64-bit unsigned, incr wraps, decr stops at 0; null
 * when the value is no number. The result keeps the item's flags and expiry (its version is the
 * caller's). A result no longer than the old value takes its place, padded with spaces to the old
 * length (clients see "9 " after "10" - 1), and the item stays as read as it was, memcached
 * rewriting it in place; a longer one is a new item.
 */
export function applyDelta(
  item: Item,
  delta: bigint,
  decrement: boolean,
): { next: bigint; item: Omit<Item, "version"> } | null {
  const current = parseCounter(item.value);
  if (current === null) return null;
  const next = decrement ? (current > delta ? current - delta : 0n) : (current + delta) & UINT64_MASK;
  const digits = next.toString();
  const old = item.value.length;
  const inPlace = digits.length <= old;
  return {
    next,
    item: {
      value: Buffer.from(inPlace ? digits.padEnd(old, " ") : digits, "latin1"),
      flags: item.flags,
      expiresAt: item.expiresAt,
      fetched: inPlace && item.fetched === true,
    },
  };
}

/**
 * memcached reads a counter with strtoull: decimal digits, optionally followed by spaces (its own
 * in-place decr pads with them), at most 2^64-1. Anything else is not a number.
 */
/** A stored value as a counter, read as memcached's incr reads it (safe_strtoull over the data). */
function parseCounter(value: Uint8Array): bigint | null {
  return strtoull(Buffer.from(value.buffer, value.byteOffset, value.length).toString("latin1"));
}

/** Versions are cas values: 64-bit unsigned, as memcached's, and never wrap. */
const MAX_VERSION = (1n << 64n) - 1n;

/** The version after `version`; a write that would pass 2^64-1 is refused, never wrapped. */
function nextVersion(key: string, version: bigint): bigint {
  if (version >= MAX_VERSION)
    throw new ServerError("VERSION_OVERFLOW", `version overflow: key ${key} is at the largest version`);
  return version + 1n;
}
