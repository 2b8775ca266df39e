/**
 * The engine contract. Engines are dumb stores of items under keys; the memcached semantics
 * (add/replace/cas/append/incr/expiry/versions) live once above them in `store.ts`, so every engine
 * behaves alike. Keys are latin1 strings: one char per byte of the memcached key.
 */

export interface Item {
  value: Uint8Array;
  /** memcached's 32-bit client flags, stored verbatim. */
  flags: number;
  /** Flare's 64-bit version, shown as the `gets` cas value; only ever grows for a key. */
  version: bigint;
  /** Absolute expiry in Unix milliseconds; 0 = never. */
  expiresAt: number;
  /**
   * Read access, from engines that track it (memory), as it was before the read that returned the
   * item: whether a client read it since it was stored, and how many seconds ago it was last used.
   * On a put, `fetched` says whether the item stays read (a touch, an in-place incr); absent: a new
   * item, not read yet.
   */
  fetched?: boolean;
  idleSeconds?: number;
}

/**
 * An item as an engine holds it, for a get's reply: its value is bytes `start` to `end` of `buf`,
 * the engine's own memory. Valid only until the engine's next call, and never to be written to:
 * the reply copies it at once (no copy of the value is made on the way).
 */
export interface ItemView {
  flags: number;
  expiresAt: number;
  buf: Buffer;
  start: number;
  end: number;
}

export interface EngineStats {
  items: number;
  bytes: number;
  /** Memory limit in bytes, 0 when the engine has none. */
  limitBytes: number;
  evictions: number;
}

interface EngineBase {
  readonly kind: string;
  /** Streams every stored item, live or not, without loading them all; writes may go on meanwhile. */
  scan(): AsyncIterable<[string, Item]>;
  stats(): EngineStats;
  /**
   * Whether the engine serves now; `ping` (the index's health check) asks it under a deadline, so
   * an engine that is gone or frozen fails the node over. Engines behind I/O make a real round trip.
   */
  healthy(): boolean | Promise<boolean>;
  close(): Promise<void>;
}

/**
 * An engine that answers reads in the same tick (memory; leveldb through its sync reads and an
 * overlay of writes in flight). The store then runs each command to completion without promises
 * or locks: the event loop already serializes them.
 */
export interface SyncEngine extends EngineBase {
  readonly sync: true;
  /**
   * `access` (the default): a client reads the item, which then counts as recently used and fetched;
   * false for a look that must leave it as it is (a write deciding, a meta get with `u`).
   * `withValue` false: the caller needs the item's other fields only (a set deciding), and an
   * engine may leave its value empty rather than copy it out.
   */
  get(key: string, access?: boolean, withValue?: boolean): Item | undefined;
  /** As `get` (a client's read), as a view of the engine's memory, when the engine keeps items in memory. */
  view?(key: string): ItemView | undefined;
  /** Returns false when the item cannot be held at all (larger than the engine's memory). */
  put(key: string, item: Item): boolean;
  delete(key: string): boolean;
  clear(): void | Promise<void>;
  /** Resolves when every write made so far is durable; undefined when none is in flight. */
  settled(): Promise<void> | undefined;
}

/** An engine behind a network hop (redis): every call is a promise; the store locks per key. */
export interface AsyncEngine extends EngineBase {
  readonly sync: false;
  get(key: string): Promise<Item | undefined>;
  put(key: string, item: Item): Promise<void>;
  delete(key: string): Promise<boolean>;
  clear(): Promise<void>;
}

export type Engine = SyncEngine | AsyncEngine;

/** Engines that keep tombstones across restarts (leveldb) give the store these. */
export interface TombstoneJournal {
  save(key: string, version: bigint, holdUntil: number): void;
  remove(key: string): void;
  saveFloor(floor: bigint): void;
}

/**
 * Told about items an engine dropped on its own (LRU), so their versions are not forgotten: the
 * store raises the floor every new version starts above, as when a tombstone is forgotten, so an
 * evicted key written again goes on above its old version and no per-key record is kept.
 */
export type EvictionListener = (version: bigint) => void;
