import type { TombstoneJournal } from "./engine.js";

/**
 * Versions of keys that no longer hold an item (deleted, expired, evicted), so a key written again
 * continues from its old version instead of starting over: cas values never repeat and replicas
 * can order writes by version. Bounded like Flare's header cache (`storage-cache-size`); what falls
 * out raises a floor that every new version starts above, so versions never go back.
 */
export interface Tombstone {
  version: bigint;
  /** `delete <key> <hold>`: add/replace refuse the key until then (Unix ms); 0 = no hold. */
  holdUntil: number;
}

interface Held extends Tombstone {
  /** Its place in the arrival order (see `order`). */
  stamp: number;
}

export class Tombstones {
  private readonly map = new Map<string, Held>();
  /**
   * Keys in the order their tombstones were set, with the stamp each had then: the oldest is found
   * at the front in O(1). Entries whose key was set again or removed since are stale and skipped;
   * the list is compacted when stale entries are most of it. (A Map's first entry is no O(1)
   * answer: V8 keeps deleted entries as holes at its front until it rehashes.)
   */
  private orderKeys: string[] = [];
  private orderStamps: number[] = [];
  private head = 0;
  private stamp = 0;
  /** Every version ever forgotten is at most this. */
  floor = 0n;

  constructor(
    private readonly limit: number,
    /** Where a persistent engine keeps them across restarts. */
    private readonly journal?: TombstoneJournal,
  ) {}

  /** Restores what a persistent engine kept. */
  load(entries: Iterable<[string, Tombstone]>, floor: bigint): void {
    this.floor = floor;
    for (const [key, t] of entries) this.put(key, t.version, t.holdUntil);
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): Tombstone | undefined {
    return this.map.get(key);
  }

  /** The version a key had last, whether or not a tombstone for it is still held. */
  lastVersion(key: string): bigint {
    const t = this.map.get(key);
    return t !== undefined && t.version > this.floor ? t.version : this.floor;
  }

  set(key: string, version: bigint, holdUntil: number): void {
    this.put(key, version, holdUntil);
    this.journal?.save(key, version, holdUntil);
    if (this.map.size > this.limit) {
      const oldest = this.popOldest();
      if (oldest !== undefined) {
        const [oldKey, t] = oldest;
        this.map.delete(oldKey);
        this.journal?.remove(oldKey);
        this.raiseFloor(t.version);
      }
    }
  }

  private put(key: string, version: bigint, holdUntil: number): void {
    const stamp = ++this.stamp;
    this.map.set(key, { version, holdUntil, stamp });
    this.orderKeys.push(key);
    this.orderStamps.push(stamp);
    const waiting = this.orderKeys.length - this.head;
    // Compacted once the consumed front or the stale entries are most of it: O(1) amortized.
    if (waiting > 2 * this.map.size + 1024 || (this.head > 4096 && this.head > waiting)) this.compact();
  }

  /** The tombstone set longest ago (skipping stale entries of the order). */
  private popOldest(): [string, Held] | undefined {
    while (this.head < this.orderKeys.length) {
      const key = this.orderKeys[this.head] as string;
      const stamp = this.orderStamps[this.head] as number;
      this.head++;
      const t = this.map.get(key);
      if (t !== undefined && t.stamp === stamp) return [key, t];
    }
    return undefined;
  }

  /** Drops the stale entries of the order (amortized: only once they outnumber the live ones). */
  private compact(): void {
    const keys: string[] = [];
    const stamps: number[] = [];
    for (let i = this.head; i < this.orderKeys.length; i++) {
      const key = this.orderKeys[i] as string;
      const stamp = this.orderStamps[i] as number;
      if (this.map.get(key)?.stamp === stamp) {
        keys.push(key);
        stamps.push(stamp);
      }
    }
    this.orderKeys = keys;
    this.orderStamps = stamps;
    this.head = 0;
  }

  delete(key: string): void {
    if (this.map.size > 0 && this.map.delete(key)) this.journal?.remove(key);
  }

  raiseFloor(version: bigint): void {
    if (version <= this.floor) return;
    this.floor = version;
    this.journal?.saveFloor(version);
  }

  clear(): void {
    for (const key of this.map.keys()) this.journal?.remove(key);
    this.map.clear();
    this.orderKeys = [];
    this.orderStamps = [];
    this.head = 0;
  }
}
