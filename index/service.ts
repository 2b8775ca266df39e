/**
 * The index service (flarei): the keeper of the node map. It applies changes (operators,
 * registering nodes, its monitors) one at a time, stores each new map before anyone hears of it,
 * and pushes it to every live node, a newly promoted master first. With a shared store (etcd)
 * only the leading index does so; the others follow the stored map, serve it, and refuse changes
 * naming the leader.
 */
import type { Logger } from "../common/log.js";
import type { ClusterSecret } from "../protocol/cluster-auth.js";
import { indexClock } from "../protocol/cluster-member.js";
import type { NodeMapData } from "../protocol/node-map.js";
import {
  type NodeEntry,
  type NodeState,
  nodeKey,
  nodeLine,
  type Role,
  statsNodesLines,
} from "../protocol/node-map.js";
import type { IndexConfig } from "./config.js";
import type { MapStore } from "./map-store.js";
import { NodeMonitor } from "./monitor.js";
import { type Change, NodeMap } from "./node-map.js";
import { NodeStats } from "./node-stats.js";

/** A change of the map, as the dashboard's timeline shows it. */
export interface TimelineEntry {
  /** Unix ms it was stored. */
  at: number;
  mapVersion: number;
  /** What made it: `monitor down`, `node role`, ... */
  what: string;
  events: string[];
  /** The slave made master, for a failover. */
  promoted?: string;
  /** A failover: from the first failed check of the dead master to the new map stored. */
  tookMs?: number;
}

/** Timeline entries kept. */
const TIMELINE = 100;
/** How often every live node is asked for its stats (the dashboard's charts, /metrics). */
const SAMPLE_MS = 1000;

export class IndexService {
  readonly map = new NodeMap();
  private readonly monitors = new Map<string, NodeMonitor>();
  private readonly waiters = new Set<() => void>();
  /** Failovers done since start (for /metrics). */
  failovers = 0;
  private stopped = false;
  /** The map as last stored: what the map goes back to when storing a change fails. */
  private committed: NodeMapData | undefined;
  /** Changes run one after another: each starts from the map the one before stored. */
  private queue: Promise<unknown> = Promise.resolve();
  /** What each live node is doing (sampled while this index leads). */
  readonly stats = new NodeStats();
  /** Changes stored by this index, oldest first. */
  readonly timeline: TimelineEntry[] = [];
  private readonly listeners = new Set<() => void>();
  private sampler: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: IndexConfig,
    private readonly secret: ClusterSecret,
    private readonly log: Logger,
    readonly store: MapStore,
  ) {}

  /** Called after each change of the map and each round of stats; returns how to stop. */
  onUpdate(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private updated(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Asks every live node for its stats, at once; nodes that do not answer are left out. */
  private async sample(): Promise<void> {
    if (!this.store.leading) return;
    const live = this.map.list().filter((n) => n.state !== "down" && n.role !== "proxy");
    const at = Date.now();
    await Promise.all(
      live.map(async (n) => {
        const key = nodeKey(n.host, n.port);
        const stats = await this.monitors.get(key)?.stats();
        if (stats !== undefined) this.stats.record(key, stats, at);
      }),
    );
    this.stats.retain(new Set(this.map.list().map((n) => nodeKey(n.host, n.port))));
    this.updated();
  }

  /** Loads the map and starts leading (the file store) or following and campaigning (etcd). */
  async start(self: string): Promise<void> {
    this.sampler = setInterval(() => void this.sample(), SAMPLE_MS);
    this.sampler.unref();
    await this.store.start(self, {
      elected: (data) => {
        this.follow(data);
        if (data !== undefined)
          this.log.info("node map loaded", { version: data.version, nodes: data.nodes.length });
        for (const n of this.map.list()) this.watch(n.host, n.port);
        // A leader that took over knows nothing of the nodes' health yet (the old one may have
        // died with a master): every node is checked now, and told the map it leads from.
        if (this.store.handoverMs > 0) {
          for (const m of this.monitors.values()) m.checkNow();
          if (data !== undefined) void this.broadcast(data.version, data.nodes, undefined);
        }
      },
      deposed: () => {
        for (const m of this.monitors.values()) m.stop();
        this.monitors.clear();
      },
      changed: (data) => this.follow(data),
    });
  }

  /** Why this index takes no change, naming the leader when it knows it. */
  notLeader(): string {
    const { leader, trouble } = this.store;
    const why =
      trouble !== undefined
        ? `no leader: ${trouble}`
        : leader === undefined
          ? "no leader now"
          : `leader: ${leader}`;
    return `not the leader index (${why})`;
  }

  /** Whether this index may change the map now. */
  get leading(): boolean {
    return this.store.leading;
  }

  private follow(data: NodeMapData | undefined): void {
    this.committed = data;
    this.map.reset(data);
    for (const w of [...this.waiters]) w();
    this.updated();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.sampler);
    for (const m of this.monitors.values()) m.stop();
    this.monitors.clear();
    for (const w of this.waiters) w();
  }

  /**
   * `node add` from a starting node. A node the map still has as live has restarted and lost what
   * it was: it is failed over first (Flare refused it and the node would not start).
   */
  add(host: string, port: number, httpPort?: number, leaseMs?: number): Promise<Change> {
    return this.serially(async () => {
      const existing = this.map.get(host, port);
      if (existing !== undefined && existing.state !== "down") {
        this.log.warn("node restarted", {
          node: nodeKey(host, port),
          was: `${existing.role}/${existing.state}`,
        });
        const down = await this.commit(this.map.down(host, port), "restart");
        if (!down.ok) return down;
      }
      const change = await this.commit(this.map.add(host, port, httpPort, leaseMs), "node add");
      if (change.ok) {
        this.watch(host, port);
        // The broadcast went out before this node had a monitor link: it gets the map (and its
        // version, which `node add`'s reply does not carry) now.
        const data = this.map.toData();
        void this.monitors.get(nodeKey(host, port))?.push(syncText(data.version, data.nodes));
      }
      return change;
    });
  }

  setRole(host: string, port: number, role: Role, balance?: number, partition?: number): Promise<Change> {
    return this.serially(() =>
      this.commit(this.map.setRole(host, port, role, balance, partition), "node role"),
    );
  }

  /**
   * A new partition's master reports `ready` once it copied its keys; with partition-auto-activate
   * the index activates it at once, so every node and proxy moves to one more partition.
   */
  setState(host: string, port: number, state: NodeState): Promise<Change> {
    return this.serially(async () => {
      const change = await this.commit(this.map.setState(host, port, state), "node state");
      const node = this.map.get(host, port);
      if (change.ok && state === "ready" && node?.role === "master" && this.config["partition-auto-activate"])
        return this.commit(this.map.setState(host, port, "active"), "partition activation");
      return change;
    });
  }

  remove(host: string, port: number): Promise<Change> {
    return this.serially(async () => {
      const change = await this.commit(this.map.remove(host, port), "node remove");
      if (change.ok && change.changed) {
        this.monitors.get(nodeKey(host, port))?.stop();
        this.monitors.delete(nodeKey(host, port));
      }
      return change;
    });
  }

  /** A node going away on purpose: down at once, without waiting for the monitor. */
  shutdown(host: string, port: number): Promise<Change> {
    return this.serially(() => this.commit(this.map.down(host, port), "shutdown"));
  }

  /** Someone (a proxy) could not reach a node: check it now rather than at the next interval. */
  suspect(host: string, port: number): boolean {
    const monitor = this.monitors.get(nodeKey(host, port));
    monitor?.checkNow();
    return monitor !== undefined;
  }

  statsNodes(): string[] {
    return statsNodesLines(this.map.list());
  }

  nodeLines(): string[] {
    return this.map.list().map(nodeLine);
  }

  meta(): string[] {
    const c = this.config;
    return [
      `META partition-size ${c["partition-size"]}`,
      `META key-hash-algorithm ${c["key-hash-algorithm"]}`,
      `META partition-type ${c["partition-type"]}`,
      `META partition-modular-hint ${c["partition-modular-hint"]}`,
      `META partition-modular-virtual ${c["partition-modular-virtual"]}`,
      `META master-lease ${this.suggestedLease()}`,
      `META time ${indexClock()}`,
    ];
  }

  /**
   * The lease a master should hold (ms): well above the ping interval, so a healthy master keeps
   * it through a slow ping, and about the time a silent master takes to be called down (one
   * interval, then `threshold` pings that time out), since failover waits the lease out anyway.
   * With several indexes, the pings pause while a dead leader's lease runs out and another is
   * elected: the masters' leases outlast that.
   */
  private suggestedLease(): number {
    const c = this.config;
    const handover = this.store.handoverMs === 0 ? 0 : this.store.handoverMs + HANDOVER_MARGIN_MS;
    return (
      c["monitor-interval"] * 1000 +
      Math.floor((c["monitor-threshold"] * c["monitor-read-timeout"]) / 2) +
      handover
    );
  }

  /** Resolves when the map version passes `after`, or after `timeoutMs` (HTTP long-poll). */
  waitForVersion(after: number, timeoutMs: number): Promise<void> {
    if (this.map.version > after || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const check = (): void => {
        if (this.map.version > after || this.stopped) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(check);
    });
  }

  /**
   * Runs a change once the changes before it are done, and only while this index leads: a change
   * works out the new map from the one the last change stored.
   */
  private serially(change: () => Change | Promise<Change>): Promise<Change> {
    const run = this.queue.then(() => {
      if (!this.store.leading)
        return { ok: false, error: this.notLeader(), leader: this.store.leader ?? "" } satisfies Change;
      return change();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Stores the map a change made, then tells everyone; a map the store refused is undone.
   * `since`: when the failure it answers was first seen (a failover's detection).
   */
  private async commit(change: Change, what: string, since?: number): Promise<Change> {
    if (!change.ok) {
      this.log.warn(`${what} refused`, { reason: change.error });
      return change;
    }
    if (!change.changed) return change;
    const data = this.map.toData();
    try {
      await this.store.save(data);
    } catch (err) {
      this.map.reset(this.committed);
      this.log.warn(`${what} not stored`, { reason: (err as Error).message });
      return { ok: false, error: `not stored: ${(err as Error).message}`, leader: this.store.leader ?? "" };
    }
    this.committed = data;
    for (const event of change.events)
      this.log.info(event.split(" ").slice(0, 2).join(" "), { detail: event, mapVersion: data.version });
    if (change.promoted !== undefined) this.failovers++;
    this.log.info("partition map rebuilt", { mapVersion: data.version });
    const at = Date.now();
    this.timeline.push({
      at,
      mapVersion: data.version,
      what,
      events: change.events,
      ...(change.promoted !== undefined ? { promoted: change.promoted } : {}),
      ...(since !== undefined && since > 0 ? { tookMs: at - since } : {}),
    });
    if (this.timeline.length > TIMELINE) this.timeline.shift();
    for (const w of [...this.waiters]) w();
    this.updated();
    void this.broadcast(data.version, data.nodes, change.promoted);
    return change;
  }

  /** Pushes the map to every live node: a new master first (it must start taking writes), then the rest. */
  private async broadcast(version: number, nodes: NodeEntry[], first: string | undefined): Promise<void> {
    const text = syncText(version, nodes);
    const targets = nodes.filter((n) => n.state !== "down").map((n) => nodeKey(n.host, n.port));
    const started = Date.now();
    if (first !== undefined && targets.includes(first)) {
      const ok = await this.monitors.get(first)?.push(text);
      this.log.info("map pushed to new master", {
        node: first,
        mapVersion: version,
        ok,
        ms: Date.now() - started,
      });
    }
    const rest = targets.filter((k) => k !== first);
    // Frozen or cut off mid-broadcast, it may have lost the lead meanwhile: a deposed index tells nobody anything.
    if (!this.store.leading) {
      this.log.warn("map push abandoned: no longer leader", { mapVersion: version });
      return;
    }
    const results = await Promise.all(
      rest.map((k) => this.monitors.get(k)?.push(text) ?? Promise.resolve(false)),
    );
    if (!this.store.leading) {
      this.log.warn("map push abandoned: no longer leader", { mapVersion: version });
      return;
    }
    this.log.info("map pushed", {
      mapVersion: version,
      told: rest.filter((_, i) => results[i]),
      failed: rest.filter((_, i) => !results[i]),
      ms: Date.now() - started,
    });
  }

  /**
   * A dead node. For a master that holds a lease and may still be alive (cut off or frozen, not
   * refusing connections as a dead process does): wait until the lease its last ping may have
   * renewed has run out, for it may take writes until then. Then ask its slaves how far they got,
   * so the furthest is promoted.
   */
  private async failover(host: string, port: number): Promise<void> {
    const dead = this.map.get(host, port);
    const since = this.monitors.get(nodeKey(host, port))?.failingSince;
    let applied: Map<string, number> | undefined;
    if (dead?.role === "master" && dead.state === "active") {
      const monitor = this.monitors.get(nodeKey(host, port));
      const wait =
        dead.leaseMs === undefined || monitor === undefined || monitor.gone
          ? 0
          : monitor.lastPingSentAt + dead.leaseMs + LEASE_MARGIN_MS - indexClock();
      if (wait > 0) {
        this.log.info("waiting out the master's lease", { node: nodeKey(host, port), ms: wait });
        await new Promise((r) => setTimeout(r, wait));
      }
      const slaves = this.map
        .list()
        .filter((n) => n.role === "slave" && n.partition === dead.partition && n.state === "active");
      const answers = await Promise.all(
        slaves.map(async (n) => {
          const key = nodeKey(n.host, n.port);
          return [key, await this.monitors.get(key)?.replicationSeq()] as const;
        }),
      );
      applied = new Map(answers.filter((a): a is readonly [string, number] => a[1] !== undefined));
      if (applied.size > 0)
        this.log.info("slave progress", { partition: dead.partition, applied: Object.fromEntries(applied) });
    }
    await this.serially(() => this.commit(this.map.down(host, port, applied), "monitor down", since));
  }

  private watch(host: string, port: number): void {
    const key = nodeKey(host, port);
    if (this.monitors.has(key) || this.stopped || !this.store.leading) return;
    const c = this.config;
    const monitor = new NodeMonitor(
      host,
      port,
      {
        credentials: { secret: this.secret, role: "index" },
        intervalMs: c["monitor-interval"] * 1000,
        threshold: c["monitor-threshold"],
        readTimeoutMs: c["monitor-read-timeout"],
        retryWaitMs: c["monitor-retry-wait"],
      },
      {
        down: () => {
          this.log.warn("node unreachable", { node: key, checks: c["monitor-threshold"] });
          this.failover(host, port).catch((err: unknown) => {
            this.log.error("failover without slave progress", { node: key, err });
            void this.serially(() => this.commit(this.map.down(host, port), "monitor down"));
          });
        },
        up: () => {
          this.log.info("node reachable again", { node: key });
          void this.serially(() => this.commit(this.map.up(host, port), "monitor up"));
        },
        downInMap: () => this.map.get(host, port)?.state === "down",
        mayAct: () => this.store.leading,
        mapText: () => {
          const data = this.map.toData();
          return syncText(data.version, data.nodes);
        },
      },
      this.log.child({ monitor: key }),
    );
    this.monitors.set(key, monitor);
  }
}

/** How long after a leader's lease runs out a new leader's first pings reach the masters, at most. */
const HANDOVER_MARGIN_MS = 1000;

/** Slack over a master's lease for the ping's way to it (the node counts from the send time plus the least delay it saw). */
const LEASE_MARGIN_MS = 100;

/** Flare's map push: `node sync <version>`, a NODE line per node, END. */
function syncText(version: number, nodes: readonly NodeEntry[]): string {
  return `node sync ${version}\r\n${nodes.map((n) => `${nodeLine(n)}\r\n`).join("")}END\r\n`;
}
