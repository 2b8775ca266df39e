/**
 * In-memory engine with memory that is known in advance, laid out as memcached lays it out:
 *
 * - Values live in 1 MiB pages cut into chunks of one size class (sizes grow by 1.25×), so the
 *   engine holds a few large Buffers instead of one object and one Buffer per item. A value larger
 *   than half a page gets a Buffer of its own.
 * - Per item, the rest is a slot in typed arrays (flags, version, expiry, LRU links) and the key
 *   string in the index Map; together about ITEM_OVERHEAD bytes, counted against the limit.
 * - `memory-limit` bounds pages + large values + items × ITEM_OVERHEAD: what the engine holds.
 *   When a write needs room the least recently used item goes (one global LRU, O(1) per eviction);
 *   a page whose items all went returns to a pool any size class can take.
 * - An item moves to the young end at most once a second (memcached's ITEM_UPDATE_INTERVAL), so
 *   hot reads do not pay for reordering on every hit.
 *
 * Reads copy the value out: a chunk is reused once its item goes, and a reply may still be
 * waiting to be written.
 */
import type { EngineStats, EvictionListener, Item, SyncEngine } from "../engine.js";

/** Page size: 1 MiB, smaller under a small limit so that it still holds several pages. */
const MAX_PAGE = 1 << 20;
const MIN_CHUNK = 48;
const GROWTH = 1.25;
/**
 * What an item costs beside its value: its Map entry and key string (V8: about 70 bytes for keys
 * up to 24 bytes) and its typed-array slots (44 bytes, arrays grown by 1.5×). Measured with
 * 1 M items (README, Performance).
 */
export const ITEM_OVERHEAD = 144;
const BUMP_INTERVAL_S = 1;
const NONE = -1;
/** pageOf value of an item whose value has a Buffer of its own. */
const LARGE = -2;

interface Page {
  /** Its slot in `pages`, which items name it by. */
  id: number;
  buf: Buffer;
  cls: number;
  /** Chunks not in use, as a stack. */
  free: Int32Array;
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

/** Chunk sizes from MIN_CHUNK up to half a page, each 1.25× the last, 8-byte aligned. */
function sizeClasses(page: number): SizeClass[] {
  const out: SizeClass[] = [];
  for (let size = MIN_CHUNK; ; size = Math.ceil((size * GROWTH) / 8) * 8) {
    const s = Math.min(size, page / 2);
    out.push({ size: s, chunks: Math.floor(page / s), partial: [] });
    if (s === page / 2) return out;
  }
}

export class MemoryEngine implements SyncEngine {
  readonly kind = "memory";
  readonly sync = true;
  private readonly index = new Map<string, number>();
  private readonly page: number;
  /** Values above this get a Buffer of their own instead of a chunk. */
  private readonly maxChunk: number;
  private readonly classes: SizeClass[];
  private readonly pages: (Page | undefined)[] = [];
  private readonly freePageSlots: number[] = [];
  /** Pages no class uses now; any class takes them before a new page is allocated. */
  private readonly pool: Buffer[] = [];
  private pageBytes = 0;
  private largeBytes = 0;
  private evictions = 0;
  /** Seconds since start, for the LRU's once-a-second moves: a tick a second, not a clock read per get. */
  private clock = 0;
  private readonly ticker: NodeJS.Timeout;

  // Items, as slots of parallel arrays (struct of arrays: no object per item).
  private capacity = 0;
  private keys: (string | undefined)[] = [];
  private large: (Buffer | undefined)[] = [];
  private pageOf = new Int32Array(0);
  private chunkOf = new Int32Array(0);
  private length = new Int32Array(0);
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

  constructor(private readonly options: MemoryEngineOptions) {
    this.page = Math.min(MAX_PAGE, 2 ** Math.floor(Math.log2(options.limitBytes / 8)));
    this.maxChunk = this.page / 2;
    this.classes = sizeClasses(this.page);
    this.ticker = setInterval(() => this.clock++, 1000);
    this.ticker.unref();
  }

  get(key: string): Item | undefined {
    const id = this.index.get(key);
    if (id === undefined) return undefined;
    const now = this.seconds();
    if (now - (this.bumped[id] as number) >= BUMP_INTERVAL_S) {
      this.bumped[id] = now;
      if (this.head !== id) {
        this.unlink(id);
        this.linkHead(id);
      }
    }
    return this.item(id);
  }

  put(key: string, item: Item): boolean {
    const n = item.value.length;
    const cls = n > this.maxChunk ? NONE : this.classOf(n);
    if ((cls === NONE ? n : this.page) + ITEM_OVERHEAD > this.options.limitBytes) return false;
    let id = this.index.get(key);
    if (id !== undefined && cls !== NONE && this.pageOf[id] !== LARGE) {
      const page = this.pages[this.pageOf[id] as number] as Page;
      if (page.cls === cls) {
        // Same size class: the value is overwritten where it is.
        this.fill(id, page.buf, (this.chunkOf[id] as number) * (this.classes[cls] as SizeClass).size, item);
        this.touchLru(id);
        return true;
      }
    }
    if (id !== undefined) {
      // Out of the LRU while room is made, so making room cannot evict it.
      this.unlink(id);
      this.release(id);
    } else {
      id = this.newId(key);
    }
    if (!this.place(id, cls, item)) {
      // Nothing left to evict and still no room: the key is gone (memcached unlinks it too).
      this.index.delete(key);
      this.keys[id] = undefined;
      this.freeIds.push(id);
      return false;
    }
    this.bumped[id] = this.seconds();
    this.linkHead(id);
    return true;
  }

  delete(key: string): boolean {
    const id = this.index.get(key);
    if (id === undefined) return false;
    this.remove(id);
    return true;
  }

  clear(): void {
    this.index.clear();
    for (const c of this.classes) c.partial = [];
    this.pages.length = 0;
    this.freePageSlots.length = 0;
    this.pool.length = 0;
    this.pageBytes = 0;
    this.largeBytes = 0;
    this.keys = [];
    this.large = [];
    this.freeIds.length = 0;
    this.nextId = 0;
    this.head = this.tail = NONE;
  }

  settled(): undefined {
    return undefined;
  }

  healthy(): boolean {
    return true;
  }

  async *scan(): AsyncIterable<[string, Item]> {
    let n = 0;
    for (const [key, id] of this.index) {
      // Still there: the Map iterator goes on across deletes, but the slot may hold another key.
      if (this.keys[id] !== key) continue;
      yield [key, this.item(id)];
      // Let writes and other connections in between batches.
      if (++n % 1000 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  stats(): EngineStats {
    return {
      items: this.index.size,
      bytes: this.used(),
      limitBytes: this.options.limitBytes,
      evictions: this.evictions,
    };
  }

  async close(): Promise<void> {
    clearInterval(this.ticker);
    this.clear();
  }

  /** What the engine holds: pages (in use or pooled), values of their own, items' overhead. */
  private used(): number {
    return this.pageBytes + this.largeBytes + this.index.size * ITEM_OVERHEAD;
  }

  private seconds(): number {
    return this.clock;
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

  private item(id: number): Item {
    const n = this.length[id] as number;
    const value = Buffer.allocUnsafe(n);
    const page = this.pageOf[id] as number;
    if (page === LARGE) (this.large[id] as Buffer).copy(value, 0, 0, n);
    else {
      const p = this.pages[page] as Page;
      const at = (this.chunkOf[id] as number) * (this.classes[p.cls] as SizeClass).size;
      p.buf.copy(value, 0, at, at + n);
    }
    return {
      value,
      flags: this.flags[id] as number,
      version: this.versions[id] as bigint,
      expiresAt: this.expires[id] as number,
    };
  }

  private fill(id: number, buf: Buffer, at: number, item: Item): void {
    buf.set(item.value, at);
    this.length[id] = item.value.length;
    this.flags[id] = item.flags;
    this.versions[id] = item.version;
    this.expires[id] = item.expiresAt;
  }

  /** Keeps an overwritten item's LRU place unless it is due a move to the young end. */
  private touchLru(id: number): void {
    const now = this.seconds();
    if (now - (this.bumped[id] as number) < BUMP_INTERVAL_S || this.head === id) return;
    this.bumped[id] = now;
    this.unlink(id);
    this.linkHead(id);
  }

  /** Stores the value of item `id` (out of the LRU), evicting the oldest items until it fits. */
  private place(id: number, cls: number, item: Item): boolean {
    const limit = this.options.limitBytes;
    const n = item.value.length;
    if (cls === NONE) {
      while (this.used() + n > limit) {
        if (this.pool.length > 0) this.dropPooledPage();
        else if (!this.evictOldest()) return false;
      }
      const buf = Buffer.allocUnsafeSlow(n);
      this.large[id] = buf;
      this.largeBytes += n;
      this.pageOf[id] = LARGE;
      this.fill(id, buf, 0, item);
      return true;
    }
    const sc = this.classes[cls] as SizeClass;
    for (;;) {
      if (this.used() <= limit) {
        const page = sc.partial[sc.partial.length - 1];
        if (page !== undefined) {
          const chunk = page.free[--page.top] as number;
          if (page.top === 0) this.leavePartial(page);
          this.pageOf[id] = page.id;
          this.chunkOf[id] = chunk;
          this.fill(id, page.buf, chunk * sc.size, item);
          return true;
        }
        if (this.pool.length > 0 || this.used() + this.page <= limit) {
          this.addPage(cls);
          continue;
        }
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
    const free = new Int32Array(sc.chunks);
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

  /** Gives back the value's memory of item `id`; a page left empty goes to the pool. */
  private release(id: number): void {
    const pageId = this.pageOf[id] as number;
    if (pageId === LARGE) {
      this.largeBytes -= this.length[id] as number;
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
    const key = this.keys[id] as string;
    const version = this.versions[id] as bigint;
    this.remove(id);
    this.evictions++;
    this.options.onEvict?.(key, version);
    return true;
  }

  private remove(id: number): void {
    this.unlink(id);
    this.release(id);
    this.index.delete(this.keys[id] as string);
    this.keys[id] = undefined;
    this.freeIds.push(id);
  }

  private newId(key: string): number {
    let id = this.freeIds.pop();
    if (id === undefined) {
      id = this.nextId++;
      if (id >= this.capacity) this.grow();
    }
    this.keys[id] = key;
    this.index.set(key, id);
    return id;
  }

  private grow(): void {
    const cap = Math.max(1024, Math.ceil(this.capacity * 1.5));
    const resize = <T extends Int32Array | Uint32Array | Float64Array | BigUint64Array>(
      old: T,
      make: (n: number) => T,
    ): T => {
      const a = make(cap);
      a.set(old as never);
      return a;
    };
    this.pageOf = resize(this.pageOf, (n) => new Int32Array(n));
    this.chunkOf = resize(this.chunkOf, (n) => new Int32Array(n));
    this.length = resize(this.length, (n) => new Int32Array(n));
    this.flags = resize(this.flags, (n) => new Uint32Array(n));
    this.versions = resize(this.versions, (n) => new BigUint64Array(n));
    this.expires = resize(this.expires, (n) => new Float64Array(n));
    this.bumped = resize(this.bumped, (n) => new Uint32Array(n));
    this.prev = resize(this.prev, (n) => new Int32Array(n));
    this.next = resize(this.next, (n) => new Int32Array(n));
    this.capacity = cap;
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
