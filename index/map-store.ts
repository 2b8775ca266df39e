/**
 * Where the node map is kept and who may change it. `file://DIR` (Flare's default): this index
 * alone, the map in a file. `etcd://...`: several index processes share one map in etcd, and the
 * one elected leader changes it (index/etcd-store.ts).
 */
import type { NodeMapData } from "../protocol/node-map.js";
import { loadMap, saveMap } from "./persistence.js";

/** What the store tells the index: it now leads (with the map to lead from), no longer does, or another index changed the map. */
export interface StoreEvents {
  elected(data: NodeMapData | undefined): void;
  deposed(reason: string): void;
  changed(data: NodeMapData): void;
}

export interface MapStore {
  /** The map as stored (undefined: none yet). */
  load(): Promise<NodeMapData | undefined>;
  /** Starts leading or following; `self` names this index to the others (its admin address). */
  start(self: string, events: StoreEvents): Promise<void>;
  /** Whether this index may change the map and act on nodes at this moment. */
  readonly leading: boolean;
  /** The index that leads, when known. */
  readonly leader: string | undefined;
  /** Why no index can lead now, when the store knows (etcd without quorum). */
  readonly trouble: string | undefined;
  /**
   * Stores the map that follows the one this index last stored or loaded; rejects (and this
   * index stops leading) if another index changed it meanwhile or this one no longer leads.
   */
  save(data: NodeMapData): Promise<void>;
  close(): Promise<void>;
  /** For `stats` and /metrics: `file` or `etcd`. */
  readonly kind: string;
  /**
   * How long the map may go without a leader when the leader dies (ms): 0 for a single index.
   * Masters' leases outlast it, and a new leader checks every node at once and tells them its map.
   */
  readonly handoverMs: number;
}

export class NotLeaderError extends Error {}

export class FileMapStore implements MapStore {
  readonly kind = "file";
  readonly handoverMs = 0;
  readonly leading = true;
  readonly leader = undefined;
  readonly trouble = undefined;

  constructor(private readonly dir: string) {}

  async load(): Promise<NodeMapData | undefined> {
    return loadMap(this.dir);
  }

  async start(_self: string, events: StoreEvents): Promise<void> {
    events.elected(await this.load());
  }

  async save(data: NodeMapData): Promise<void> {
    saveMap(this.dir, data);
  }

  async close(): Promise<void> {}
}
