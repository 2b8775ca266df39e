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

export class Tombstones {
  private readonly map = new Map<string, Tombstone>();
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
    for (const [key, t] of entries) this.map.set(key, t);
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
    this.map.delete(key);
    this.map.set(key, { version, holdUntil });
    this.journal?.save(key, version, holdUntil);
    if (this.map.size > this.limit) {
      const oldest = this.map.entries().next().value;
      if (oldest !== undefined) {
        this.map.delete(oldest[0]);
        this.journal?.remove(oldest[0]);
        this.raiseFloor(oldest[1].version);
      }
    }
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
  }
}
