/**
 * Routing, pure: key -> partition (Flare's hash + modular resolver) -> a replica. Reads pick among
 * the partition's active master and slaves by balance weight; writes go to the master.
 */
import { type HashAlgorithm, ModularResolver } from "../protocol/key-hash.js";
import { type NodeEntry, nodeKey } from "../protocol/node-map.js";

export interface Partition {
  master: NodeEntry | undefined;
  /** Readable replicas (active master and active slaves) with their weights. */
  readers: { node: NodeEntry; weight: number }[];
  totalWeight: number;
}

export class Router {
  private partitions: Partition[] = [];
  private algorithm: HashAlgorithm = "simple";
  private resolver = new ModularResolver();

  /** The hash and resolver the index announced (`meta`); Flare's defaults until then. */
  use(algorithm: HashAlgorithm, resolver: ModularResolver): void {
    this.algorithm = algorithm;
    this.resolver = resolver;
  }

  /** Rebuilds the partitions from a map: partition i holds the nodes with partition i. */
  update(nodes: readonly NodeEntry[]): void {
    const parts: Partition[] = [];
    for (const n of nodes) {
      if (n.partition < 0 || n.role === "proxy") continue;
      const p = parts[n.partition] ?? { master: undefined, readers: [], totalWeight: 0 };
      parts[n.partition] = p;
      if (n.role === "master") p.master = n;
      if (n.state === "active" && n.balance > 0) {
        p.readers.push({ node: n, weight: n.balance });
        p.totalWeight += n.balance;
      }
    }
    // Serving partitions are contiguous from 0; a hole means an incomplete map. A partition being
    // added (its master preparing or ready) serves nothing until it is activated: its keys are
    // still read and written where they were.
    this.partitions = [];
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (p === undefined || (p.master?.state !== "active" && p.master?.state !== "down")) break;
      this.partitions.push(p);
    }
    for (const p of this.partitions) {
      // A live master with balance 0 still serves its partition (Flare does).
      if (p.readers.length === 0 && p.master?.state === "active") {
        p.readers.push({ node: p.master, weight: 1 });
        p.totalWeight = 1;
      }
    }
  }

  get count(): number {
    return this.partitions.length;
  }

  partitionOf(key: string): number {
    return this.resolver.partitionOf(key, this.algorithm, this.partitions.length);
  }

  partition(index: number): Partition | undefined {
    return this.partitions[index];
  }

  /** The node that takes writes for `key`, if its master is active. */
  writer(key: string): NodeEntry | undefined {
    return this.writerIn(this.partitionOf(key));
  }

  writerIn(partition: number): NodeEntry | undefined {
    const m = this.partitions[partition]?.master;
    return m?.state === "active" ? m : undefined;
  }

  /**
   * A replica to read `key` from, by balance weight, skipping `tried` (replicas that just failed).
   * `random` is in [0, 1); drawn when not given and there is a choice to make.
   */
  reader(key: string, tried: ReadonlySet<string> = EMPTY, random?: number): NodeEntry | undefined {
    return this.readerIn(this.partitionOf(key), tried, random);
  }

  readerIn(partition: number, tried: ReadonlySet<string> = EMPTY, random?: number): NodeEntry | undefined {
    const p = this.partitions[partition];
    if (p === undefined) return undefined;
    // The hot path tried nothing yet: no node names to build and look up.
    const skips = tried.size > 0;
    // A lone replica needs no draw.
    if (!skips && p.readers.length === 1) return (p.readers[0] as { node: NodeEntry }).node;
    let total = 0;
    for (const r of p.readers) if (!skips || !tried.has(nodeKey(r.node.host, r.node.port))) total += r.weight;
    if (total === 0) return undefined;
    let point = (random ?? Math.random()) * total;
    for (const r of p.readers) {
      if (skips && tried.has(nodeKey(r.node.host, r.node.port))) continue;
      point -= r.weight;
      if (point < 0) return r.node;
    }
    return undefined;
  }
}

const EMPTY: ReadonlySet<string> = new Set();
