/**
 * What each node is doing, as the dashboard and /metrics show it: the index asks every live node
 * for its `stats` once a second over its monitor link and keeps the last two minutes of samples
 * (rates from the counters' differences). Pure bookkeeping: the asking is the service's.
 */

/** One node at one moment. Rates are over the time since the sample before; null: not known yet. */
export interface NodeSample {
  /** Unix ms. */
  at: number;
  opsPerSecond: number | null;
  /** get hits / (hits + misses) over the interval; null without gets. */
  hitRatio: number | null;
  items: number;
  bytes: number;
  limitBytes: number;
  connections: number;
  /** Writes queued for its slaves (a master), summed. */
  replicationLag: number;
}

/** Counters whose sum is a node's operations. */
const OPS = [
  "cmd_get",
  "cmd_set",
  "cmd_touch",
  "cmd_flush",
  "delete_hits",
  "delete_misses",
  "incr_hits",
  "incr_misses",
  "decr_hits",
  "decr_misses",
];

/** Samples kept per node: two minutes at one a second. */
const KEEP = 120;

interface Raw {
  at: number;
  ops: number;
  hits: number;
  misses: number;
}

export class NodeStats {
  private readonly series = new Map<string, NodeSample[]>();
  private readonly last = new Map<string, Raw>();

  /** Adds a node's `stats` answer taken at `at`. */
  record(node: string, stats: ReadonlyMap<string, string>, at: number): NodeSample {
    const num = (name: string): number => Number(stats.get(name) ?? 0) || 0;
    const raw: Raw = {
      at,
      ops: OPS.reduce((sum, name) => sum + num(name), 0),
      hits: num("get_hits"),
      misses: num("get_misses"),
    };
    let lag = 0;
    for (const [name, value] of stats) if (name.startsWith("replication_lag:")) lag += Number(value) || 0;
    const before = this.last.get(node);
    this.last.set(node, raw);
    // A restarted node's counters start again from 0: no rate across that.
    const usable = before !== undefined && raw.ops >= before.ops && raw.at > before.at;
    const gets = usable ? raw.hits - before.hits + (raw.misses - before.misses) : 0;
    const sample: NodeSample = {
      at,
      opsPerSecond: usable ? ((raw.ops - before.ops) * 1000) / (raw.at - before.at) : null,
      hitRatio: usable && gets > 0 ? (raw.hits - before.hits) / gets : null,
      items: num("curr_items"),
      bytes: num("bytes"),
      limitBytes: num("limit_maxbytes"),
      connections: num("curr_connections"),
      replicationLag: lag,
    };
    let list = this.series.get(node);
    if (list === undefined) {
      list = [];
      this.series.set(node, list);
    }
    list.push(sample);
    if (list.length > KEEP) list.shift();
    return sample;
  }

  /** Forgets nodes no longer in the map. */
  retain(nodes: ReadonlySet<string>): void {
    for (const node of [...this.series.keys()]) {
      if (nodes.has(node)) continue;
      this.series.delete(node);
      this.last.delete(node);
    }
  }

  latest(node: string): NodeSample | undefined {
    const list = this.series.get(node);
    return list?.[list.length - 1];
  }

  history(): Record<string, NodeSample[]> {
    return Object.fromEntries(this.series);
  }

  nodes(): string[] {
    return [...this.series.keys()];
  }
}
