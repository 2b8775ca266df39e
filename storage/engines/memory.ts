/**
 * In-memory engine: a Map in LRU order with a byte limit. The oldest items are evicted when a put
 * would pass the limit, as memcached does. An item is moved to the young end at most once a second
 * (memcached's ITEM_UPDATE_INTERVAL idea) so hot reads do not pay for reordering on every hit.
 */
import type { EngineStats, EvictionListener, Item, SyncEngine } from "../engine.js";

/** Rough per-item bookkeeping cost (Map slot, object, Buffer header), counted against the limit. */
const ITEM_OVERHEAD = 96;
const BUMP_INTERVAL_MS = 1000;

interface Entry extends Item {
  size: number;
  bumpedAt: number;
}

export interface MemoryEngineOptions {
  limitBytes: number;
  onEvict?: EvictionListener;
}

export class MemoryEngine implements SyncEngine {
  readonly kind = "memory";
  readonly sync = true;
  private readonly map = new Map<string, Entry>();
  private bytes = 0;
  private evictions = 0;

  constructor(private readonly options: MemoryEngineOptions) {}

  get(key: string): Item | undefined {
    const entry = this.map.get(key);
    if (entry === undefined) return undefined;
    const now = Date.now();
    if (now - entry.bumpedAt >= BUMP_INTERVAL_MS) {
      entry.bumpedAt = now;
      this.map.delete(key);
      this.map.set(key, entry);
    }
    return entry;
  }

  put(key: string, item: Item): boolean {
    const size = key.length + item.value.length + ITEM_OVERHEAD;
    if (size > this.options.limitBytes) return false;
    const now = Date.now();
    const old = this.map.get(key);
    let bumpedAt = now;
    if (old !== undefined) {
      this.bytes -= old.size;
      // Overwriting a recently used key keeps its place: delete + insert churns the Map's table.
      if (now - old.bumpedAt < BUMP_INTERVAL_MS) bumpedAt = old.bumpedAt;
      else this.map.delete(key);
    }
    // Own a copy: the caller's bytes may be a view into a socket chunk or a caller's buffer.
    const value = Buffer.allocUnsafe(item.value.length);
    value.set(item.value);
    const entry: Entry = {
      value,
      flags: item.flags,
      version: item.version,
      expiresAt: item.expiresAt,
      size,
      bumpedAt,
    };
    this.bytes += size;
    if (this.bytes > this.options.limitBytes) this.evictFor();
    this.map.set(key, entry);
    return true;
  }

  delete(key: string): boolean {
    const entry = this.map.get(key);
    if (entry === undefined) return false;
    this.bytes -= entry.size;
    this.map.delete(key);
    return true;
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }

  settled(): undefined {
    return undefined;
  }

  healthy(): boolean {
    return true;
  }

  async *scan(): AsyncIterable<[string, Item]> {
    let n = 0;
    for (const pair of this.map) {
      yield pair;
      // Let writes and other connections in between batches.
      if (++n % 1000 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  stats(): EngineStats {
    return {
      items: this.map.size,
      bytes: this.bytes,
      limitBytes: this.options.limitBytes,
      evictions: this.evictions,
    };
  }

  async close(): Promise<void> {
    this.clear();
  }

  private evictFor(): void {
    const limit = this.options.limitBytes;
    for (const [key, entry] of this.map) {
      if (this.bytes <= limit) break;
      this.map.delete(key);
      this.bytes -= entry.size;
      this.evictions++;
      this.options.onEvict?.(key, entry);
    }
  }
}
