/**
 * In-memory engine whose memory is known in advance, laid out as memcached lays it out:
 *
 * - An item's key and value live together in a chunk of a 1 MiB page, pages being cut into chunks
 *   of one size class (sizes grow by 1.1×). The engine holds a few large Buffers, not an object,
 *   a Buffer and a string per item. An item too large for half a page gets a Buffer of its own.
 * - The rest of an item is a slot in typed arrays (flags, version, expiry, LRU links, hash), and
 *   keys are found through an open-addressing hash table, itself a typed array. Nothing per item
 *   lives on the JavaScript heap, so items that come and go leave no garbage for V8 to collect.
 * - `memory-limit` bounds pages + own buffers + items × ITEM_OVERHEAD (the typed-array slots and
 *   the hash table): what the engine holds. When a write needs room the least recently used item
 *   goes (one global LRU, O(1) per eviction); a page whose items all went returns to a pool any
 *   size class can take, and is freed when the items need its bytes more than any class does.
 * - Slots are renumbered into smaller arrays once fewer than half of them hold items (a cache of
 *   small items that turned to large ones), so the slots held stay near what the items are charged.
 * - An item moves to the young end at most once a second (memcached's ITEM_UPDATE_INTERVAL), so
 *   hot reads do not pay for reordering on every hit.
 *
 * Reads copy the value out: a chunk is reused once its item goes, and a reply may still be
 * waiting to be written. `view` shows it where it is, for a get whose reply copies it at once.
 */
import type { EngineStats, EvictionListener, Item, ItemView, SyncEngine } from "../engine.js";

/** The value of an item read for its other fields only. */
const NO_VALUE = Buffer.alloc(0);

/** Page size: 1 MiB, smaller under a small limit so that it still holds several pages. */
const MAX_PAGE = 1 << 20;
const MIN_CHUNK = 48;
/** Chunk sizes grow by this factor: finer than memcached's 1.25, as a chunk holds no header. */
const GROWTH = 1.1;
/** The typed arrays grow by this factor. */
const SLOTS_GROWTH = 1.25;
/** Fewest slots (and hash-table entries) the arrays are made with. */
const MIN_SLOTS = 1024;
/**
 * What an item is charged beside its chunk: 51 bytes of typed-array slots and 4 of a hash-table
 * entry, with the slack of arrays that grow by 1.25× and a table kept at most half full. Right
 * after the arrays or the table grow they hold up to 80 bytes an item (1.25 slots, 4 entries);
 * charging that always would keep 5% fewer items and, measured, no less RSS.
 */
export const ITEM_OVERHEAD = 72;
/** What the arrays may hold beyond the charge, an item, right after they grew. */
export const GROWTH_SLACK = 8;
const BUMP_INTERVAL_S = 1;
/** `live` bits: the slot holds an item; a client read it since it was stored (meta get's h). */
const LIVE = 1;
const FETCHED = 2;
const NONE = -1;
/** pageOf value of an item with a Buffer of its own. */
const LARGE = -2;

interface Page {
  /** Its slot in `pages`, which items name it by. */
  id: number;
  buf: Buffer;
  cls: number;
  /** Chunks not in use, as a stack (a page has fewer than 2^16 chunks). */
  free: Uint16Array;
  top: number;
  /** Position in its class's list of pages with free chunks; NONE when full. */
  partialAt: number;
}

interface SizeClass {
  size: number;
  chunks: number;
  /** Pages with at least one free chunk. */
  partial: Page[];
}

export interface MemoryEngineOptions {
  limitBytes: number;
  onEvict?: EvictionListener;
}

/** Chunk sizes from MIN_CHUNK up to half a page, each GROWTH times the last, 8-byte aligned. */
function sizeClasses(page: number): SizeClass[] {
  const out: SizeClass[] = [];
  for (let size = MIN_CHUNK; ; size = Math.ceil((size * GROWTH) / 8) * 8) {
    const s = Math.min(size, page / 2);
    out.push({ size: s, chunks: Math.floor(page / s), partial: [] });
    if (s === page / 2) return out;
  }
}

type SlotArray = Uint8Array | Uint16Array | Int32Array | Uint32Array | Float64Array | BigUint64Array;

/** Puts `slot` (an item id + 1) in the first empty entry from its hash's home (linear probing). */
function tableInsert(table: Int32Array, hash: number, slot: number): void {
  const mask = table.length - 1;
  let i = hash & mask;
  while (table[i] !== 0) i = (i + 1) & mask;
  table[i] = slot;
}

/** FNV-1a over the key's bytes (latin1: one char, one byte). */
function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class MemoryEngine implements SyncEngine {
  readonly kind = "memory";
  readonly sync = true;
  private readonly page: number;
  /** Items above this (key and value) get a Buffer of their own instead of a chunk. */
  private readonly maxChunk: number;
  private readonly classes: SizeClass[];
  private readonly pages: (Page | undefined)[] = [];
  private readonly freePageSlots: number[] = [];
  /** Pages no class uses now; any class takes them before a new page is allocated. */
  private readonly pool: Buffer[] = [];
  private pageBytes = 0;
  /** What the free-chunk stacks of the pages in use hold. */
  private stackBytes = 0;
  private largeBytes = 0;
  private evictions = 0;
  private count = 0;
  /** Seconds since start, for the LRU's once-a-second moves: a tick a second, not a clock read per get. */
  private clock = 0;
  private readonly ticker: NodeJS.Timeout;

  // Items, as slots of parallel arrays (struct of arrays: no object per item).
  private capacity = 0;
  private large: (Buffer | undefined)[] = [];
  private pageOf = new Int32Array(0);
  private chunkOf = new Int32Array(0);
  private keyLength = new Uint16Array(0);
  /** 1 while the slot holds an item. */
  private live = new Uint8Array(0);
  private valueLength = new Int32Array(0);
  private hashes = new Uint32Array(0);
  private flags = new Uint32Array(0);
  private versions = new BigUint64Array(0);
  private expires = new Float64Array(0);
  private bumped = new Uint32Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private readonly freeIds: number[] = [];
  private nextId = 0;
  /** LRU ends: head is the most recently used. */
  private head = NONE;
  private tail = NONE;
  /** Linear-probing hash table of item ids + 1 (0: empty), at most half full. */
  private table = new Int32Array(MIN_SLOTS);
  /** Scans walking the slots now: slots are not renumbered under them. */
  private scans = 0;

  constructor(private readonly options: MemoryEngineOptions) {
    this.page = Math.min(MAX_PAGE, 2 ** Math.floor(Math.log2(options.limitBytes / 8)));
    this.maxChunk = this.page / 2;
    this.classes = sizeClasses(this.page);
    this.ticker = setInterval(() => this.clock++, 1000);
    this.ticker.unref();
  }

  get(key: string, access = true, withValue = true): Item | undefined {
    const id = this.find(key, hashKey(key));
    if (id === NONE) return undefined;
    const item = this.item(id, withValue);
    if (access) this.accessed(id);
    return item;
  }

  /** One object, refilled by every call: a view lives only until the next. */
  private readonly itemView: ItemView = { flags: 0, expiresAt: 0, buf: Buffer.alloc(0), start: 0, end: 0 };

  view(key: string): ItemView | undefined {
    const id = this.find(key, hashKey(key));
    if (id === NONE) return undefined;
    const v = this.itemView;
    v.flags = this.flags[id] as number;
    v.expiresAt = this.expires[id] as number;
    v.buf = this.bufOf(id);
    v.start = this.valueStart(id);
    v.end = v.start + (this.valueLength[id] as number);
    this.accessed(id);
    return v;
  }

  /** A client read the item: it is fetched, and counts as recently used. */
  private accessed(id: number): void {
    this.live[id] = LIVE | FETCHED;
    const now = this.clock;
    if (now - (this.bumped[id] as number) >= BUMP_INTERVAL_S) {
      this.bumped[id] = now;
      if (this.head !== id) {
        this.unlink(id);
        this.linkHead(id);
      }
    }
  }

  put(key: string, item: Item): boolean {
    const need = key.length + item.value.length;
    const cls = need > this.maxChunk ? NONE : this.classOf(need);
    const room = cls === NONE ? need : this.page + (this.classes[cls] as SizeClass).chunks * 2;
    if (room + ITEM_OVERHEAD > this.options.limitBytes) return false;
    const hash = hashKey(key);
    let id = this.find(key, hash);
    if (id !== NONE && cls !== NONE && this.pageOf[id] !== LARGE) {
      const page = this.pages[this.pageOf[id] as number] as Page;
      if (page.cls === cls) {
        // Same size class: the value is overwritten where it is.
        this.fill(
          id,
          page.buf,
          (this.chunkOf[id] as number) * (this.classes[cls] as SizeClass).size,
          key,
          item,
        );
        this.live[id] = item.fetched === true ? LIVE | FETCHED : LIVE;
        this.touchLru(id);
        return true;
      }
    }
    if (id !== NONE) {
      // Out of the LRU and the table while room is made, so making room cannot evict it.
      this.unlink(id);
      this.release(id);
      this.unindex(id);
    } else {
      id = this.newId();
    }
    this.hashes[id] = hash;
    if (!this.place(id, cls, key, item)) {
      // Nothing left to evict and still no room: the key holds nothing (memcached unlinks it too).
      this.freeIds.push(id);
      this.shrinkIfSparse();
      return false;
    }
    this.index(id);
    if (item.fetched === true) this.live[id] = LIVE | FETCHED;
    this.bumped[id] = this.clock;
    this.linkHead(id);
    this.shrinkIfSparse();
    return true;
  }

  delete(key: string): boolean {
    const id = this.find(key, hashKey(key));
    if (id === NONE) return false;
    this.remove(id);
    this.shrinkIfSparse();
    return true;
  }

  clear(): void {
    for (const c of this.classes) c.partial = [];
    this.pages.length = 0;
    this.freePageSlots.length = 0;
    this.pool.length = 0;
    this.pageBytes = 0;
    this.stackBytes = 0;
    this.largeBytes = 0;
    this.freeIds.length = 0;
    this.count = 0;
    this.head = this.tail = NONE;
    this.table = new Int32Array(MIN_SLOTS);
    this.large = [];
    this.nextId = 0;
    this.live.fill(0);
    // A scan walking the slots keeps them, emptied.
    if (this.scans === 0) this.shrink(0);
  }

  settled(): undefined {
    return undefined;
  }

  healthy(): boolean {
    return true;
  }

  /** Every item, slot by slot; items written meanwhile may be missed or seen twice. */
  async *scan(): AsyncIterable<[string, Item]> {
    this.scans++;
    try {
      let n = 0;
      for (let id = 0; id < this.nextId; id++) {
        if (this.live[id] === 0) continue;
        yield [this.keyOf(id), this.item(id)];
        // Let writes and other connections in between batches.
        if (++n % 1000 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.scans--;
    }
  }

  stats(): EngineStats {
    return {
      items: this.count,
      bytes: this.used(),
      limitBytes: this.options.limitBytes,
      evictions: this.evictions,
    };
  }

  async close(): Promise<void> {
    clearInterval(this.ticker);
    this.clear();
  }

  /** What the engine holds: pages (in use or pooled) and their stacks, items' own buffers, items' overhead. */
  private used(): number {
    return this.pageBytes + this.stackBytes + this.largeBytes + this.count * ITEM_OVERHEAD;
  }

  private classOf(n: number): number {
    const classes = this.classes;
    let lo = 0;
    let hi = classes.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((classes[mid] as SizeClass).size >= n) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** The buffer holding item `id`: its key, then its value, from `offsetOf(id)`. */
  private bufOf(id: number): Buffer {
    const page = this.pageOf[id] as number;
    return page === LARGE ? (this.large[id] as Buffer) : (this.pages[page] as Page).buf;
  }

  private offsetOf(id: number): number {
    const page = this.pageOf[id] as number;
    if (page === LARGE) return 0;
    return (this.chunkOf[id] as number) * (this.classes[(this.pages[page] as Page).cls] as SizeClass).size;
  }

  /** Where the item's value starts in its buffer (after its key). */
  private valueStart(id: number): number {
    return this.offsetOf(id) + (this.keyLength[id] as number);
  }

  private keyOf(id: number): string {
    const at = this.offsetOf(id);
    return this.bufOf(id).latin1Slice(at, at + (this.keyLength[id] as number));
  }

  private item(id: number, withValue = true): Item {
    let value = NO_VALUE;
    if (withValue) {
      const n = this.valueLength[id] as number;
      const from = this.valueStart(id);
      value = Buffer.allocUnsafe(n);
      this.bufOf(id).copy(value, 0, from, from + n);
    }
    return {
      value,
      flags: this.flags[id] as number,
      version: this.versions[id] as bigint,
      expiresAt: this.expires[id] as number,
      fetched: ((this.live[id] as number) & FETCHED) !== 0,
      idleSeconds: this.clock - (this.bumped[id] as number),
    };
  }

  private fill(id: number, buf: Buffer, at: number, key: string, item: Item): void {
    const k = buf.latin1Write(key, at);
    buf.set(item.value, at + k);
    this.keyLength[id] = k;
    this.valueLength[id] = item.value.length;
    this.flags[id] = item.flags;
    this.versions[id] = item.version;
    this.expires[id] = item.expiresAt;
  }

  /** The id of `key`, or NONE. */
  private find(key: string, hash: number): number {
    const table = this.table;
    const mask = table.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const slot = table[i] as number;
      if (slot === 0) return NONE;
      const id = slot - 1;
      if (this.hashes[id] === hash && this.keyIs(id, key)) return id;
    }
  }

  private keyIs(id: number, key: string): boolean {
    if (this.keyLength[id] !== key.length) return false;
    const buf = this.bufOf(id);
    const at = this.offsetOf(id);
    for (let i = 0; i < key.length; i++) if (buf[at + i] !== key.charCodeAt(i)) return false;
    return true;
  }

  private index(id: number): void {
    if ((this.count + 1) * 2 > this.table.length) this.rehash(this.table.length * 2);
    tableInsert(this.table, this.hashes[id] as number, id + 1);
    this.live[id] = LIVE;
    this.count++;
  }

  /** Takes `id` out of the table, moving later entries of its probe run back (no tombstones). */
  private unindex(id: number): void {
    const table = this.table;
    const mask = table.length - 1;
    let i = (this.hashes[id] as number) & mask;
    while (table[i] !== id + 1) i = (i + 1) & mask;
    let hole = i;
    for (let j = (hole + 1) & mask; table[j] !== 0; j = (j + 1) & mask) {
      const home = (this.hashes[(table[j] as number) - 1] as number) & mask;
      // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
      if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
        table[hole] = table[j] as number;
        hole = j;
      }
    }
    table[hole] = 0;
    this.live[id] = 0;
    this.count--;
  }

  private rehash(size: number): void {
    const old = this.table;
    const table = new Int32Array(size);
    for (const slot of old) if (slot !== 0) tableInsert(table, this.hashes[slot - 1] as number, slot);
    this.table = table;
  }

  /** Keeps an overwritten item's LRU place unless it is due a move to the young end. */
  private touchLru(id: number): void {
    const now = this.clock;
    if (now - (this.bumped[id] as number) < BUMP_INTERVAL_S || this.head === id) return;
    this.bumped[id] = now;
    this.unlink(id);
    this.linkHead(id);
  }

  /** Stores item `id` (out of the LRU and the table), evicting the oldest items until it fits. */
  private place(id: number, cls: number, key: string, item: Item): boolean {
    const limit = this.options.limitBytes;
    // Counted while room is made: the table slot it will take is part of what it costs.
    const overhead = ITEM_OVERHEAD;
    if (cls === NONE) {
      const n = key.length + item.value.length;
      while (this.used() + n + overhead > limit) {
        if (this.pool.length > 0) this.dropPooledPage();
        else if (!this.evictOldest()) return false;
      }
      const buf = Buffer.allocUnsafeSlow(n);
      this.large[id] = buf;
      this.largeBytes += n;
      this.pageOf[id] = LARGE;
      this.fill(id, buf, 0, key, item);
      return true;
    }
    const sc = this.classes[cls] as SizeClass;
    for (;;) {
      if (this.used() + overhead <= limit) {
        const page = sc.partial[sc.partial.length - 1];
        if (page !== undefined) {
          const chunk = page.free[--page.top] as number;
          if (page.top === 0) this.leavePartial(page);
          this.pageOf[id] = page.id;
          this.chunkOf[id] = chunk;
          this.fill(id, page.buf, chunk * sc.size, key, item);
          return true;
        }
        // A new page, or a pooled one, and its stack of free chunks.
        const grows = (this.pool.length > 0 ? 0 : this.page) + sc.chunks * 2;
        if (this.used() + overhead + grows <= limit) {
          this.addPage(cls);
          continue;
        }
      } else if (this.pool.length > 0) {
        // The items' overhead needs room that an unused page holds.
        this.dropPooledPage();
        continue;
      }
      if (!this.evictOldest()) return false;
    }
  }

  private addPage(cls: number): void {
    const sc = this.classes[cls] as SizeClass;
    let buf = this.pool.pop();
    if (buf === undefined) {
      buf = Buffer.allocUnsafeSlow(this.page);
      this.pageBytes += this.page;
    }
    const free = new Uint16Array(sc.chunks);
    this.stackBytes += free.byteLength;
    // Chunks are handed out from the start of the page.
    for (let i = 0; i < sc.chunks; i++) free[i] = sc.chunks - 1 - i;
    const id = this.freePageSlots.pop() ?? this.pages.length;
    const page: Page = { id, buf, cls, free, top: sc.chunks, partialAt: sc.partial.length };
    this.pages[id] = page;
    sc.partial.push(page);
  }

  private leavePartial(page: Page): void {
    const list = (this.classes[page.cls] as SizeClass).partial;
    const last = list.pop() as Page;
    if (last !== page) {
      list[page.partialAt] = last;
      last.partialAt = page.partialAt;
    }
    page.partialAt = NONE;
  }

  /** Gives back item `id`'s memory; a page left empty goes to the pool. */
  private release(id: number): void {
    const pageId = this.pageOf[id] as number;
    if (pageId === LARGE) {
      this.largeBytes -= (this.large[id] as Buffer).length;
      this.large[id] = undefined;
      return;
    }
    const page = this.pages[pageId] as Page;
    const sc = this.classes[page.cls] as SizeClass;
    page.free[page.top++] = this.chunkOf[id] as number;
    if (page.partialAt === NONE) {
      page.partialAt = sc.partial.length;
      sc.partial.push(page);
    }
    if (page.top === sc.chunks) {
      this.leavePartial(page);
      this.stackBytes -= page.free.byteLength;
      this.pages[pageId] = undefined;
      this.freePageSlots.push(pageId);
      this.pool.push(page.buf);
    }
  }

  private dropPooledPage(): void {
    this.pool.pop();
    this.pageBytes -= this.page;
  }

  private evictOldest(): boolean {
    const id = this.tail;
    if (id === NONE) return false;
    const version = this.versions[id] as bigint;
    this.remove(id);
    this.evictions++;
    this.options.onEvict?.(version);
    return true;
  }

  private remove(id: number): void {
    this.unlink(id);
    this.unindex(id);
    this.release(id);
    this.freeIds.push(id);
  }

  private newId(): number {
    const id = this.freeIds.pop();
    if (id !== undefined) return id;
    if (this.nextId >= this.capacity) this.grow();
    return this.nextId++;
  }

  private grow(): void {
    this.resizeArrays(Math.max(MIN_SLOTS, Math.ceil(this.capacity * SLOTS_GROWTH)));
  }

  /** Every slot array to `cap` slots: grown with their contents, or cut to their first `cap`. */
  private resizeArrays(cap: number): void {
    this.mapSlotArrays(<T extends SlotArray>(old: T): T => {
      if (cap <= old.length) return old.slice(0, cap) as T;
      const a = new (old.constructor as new (n: number) => T)(cap);
      a.set(old as never);
      return a;
    });
    this.capacity = cap;
  }

  /**
   * Replaces every slot array with what `f` makes of it. moveSlot copies a slot of each of them
   * too: an array added here is added there.
   */
  private mapSlotArrays(f: <T extends SlotArray>(a: T) => T): void {
    this.pageOf = f(this.pageOf);
    this.chunkOf = f(this.chunkOf);
    this.keyLength = f(this.keyLength);
    this.live = f(this.live);
    this.valueLength = f(this.valueLength);
    this.hashes = f(this.hashes);
    this.flags = f(this.flags);
    this.versions = f(this.versions);
    this.expires = f(this.expires);
    this.bumped = f(this.bumped);
    this.prev = f(this.prev);
    this.next = f(this.next);
  }

  /**
   * Once fewer than half of the slots hold items, the arrays shrink to 1.25 slots an item: O(slots),
   * after the items halved, so O(1) a removal over time. Not while a scan walks the slots, nor inside
   * a write (its item is in no list yet).
   */
  private shrinkIfSparse(): void {
    if (this.capacity > 4 * MIN_SLOTS && this.count * 2 < this.capacity && this.scans === 0)
      this.shrink(Math.max(MIN_SLOTS, Math.ceil(this.count * SLOTS_GROWTH)));
  }

  /** Items in slots at `cap` or above move into free slots below it; the arrays and table follow. */
  private shrink(cap: number): void {
    const live = this.live;
    let hole = 0;
    for (let id = cap; id < this.nextId; id++) {
      if (live[id] === 0) continue;
      while (live[hole] !== 0) hole++;
      this.moveSlot(id, hole);
    }
    this.resizeArrays(cap);
    if (this.large.length > cap) this.large.length = cap;
    let top = Math.min(this.nextId, cap);
    while (top > 0 && this.live[top - 1] === 0) top--;
    this.nextId = top;
    this.freeIds.length = 0;
    let size = MIN_SLOTS;
    while ((this.count + 1) * 2 > size) size *= 2;
    const table = new Int32Array(size);
    for (let id = top - 1; id >= 0; id--) {
      if (this.live[id] === 0) this.freeIds.push(id);
      else tableInsert(table, this.hashes[id] as number, id + 1);
    }
    this.table = table;
  }

  /** Moves item `from` to the free slot `to`, keeping its place in the LRU. */
  private moveSlot(from: number, to: number): void {
    // Array by array, as mapSlotArrays lists them: a loop over a list of them takes 3–5× longer.
    this.pageOf[to] = this.pageOf[from] as number;
    this.chunkOf[to] = this.chunkOf[from] as number;
    this.keyLength[to] = this.keyLength[from] as number;
    this.live[to] = this.live[from] as number;
    this.valueLength[to] = this.valueLength[from] as number;
    this.hashes[to] = this.hashes[from] as number;
    this.flags[to] = this.flags[from] as number;
    this.versions[to] = this.versions[from] as bigint;
    this.expires[to] = this.expires[from] as number;
    this.bumped[to] = this.bumped[from] as number;
    this.prev[to] = this.prev[from] as number;
    this.next[to] = this.next[from] as number;
    if (this.pageOf[from] === LARGE) {
      this.large[to] = this.large[from];
      this.large[from] = undefined;
    }
    const p = this.prev[from] as number;
    const n = this.next[from] as number;
    if (p !== NONE) this.next[p] = to;
    else this.head = to;
    if (n !== NONE) this.prev[n] = to;
    else this.tail = to;
    this.live[from] = 0;
  }

  private linkHead(id: number): void {
    this.prev[id] = NONE;
    this.next[id] = this.head;
    if (this.head !== NONE) this.prev[this.head] = id;
    this.head = id;
    if (this.tail === NONE) this.tail = id;
  }

  private unlink(id: number): void {
    const p = this.prev[id] as number;
    const n = this.next[id] as number;
    if (p !== NONE) this.next[p] = n;
    else if (this.head === id) this.head = n;
    if (n !== NONE) this.prev[n] = p;
    else if (this.tail === id) this.tail = p;
    this.prev[id] = this.next[id] = NONE;
  }
}
