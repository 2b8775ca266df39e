/**
 * The node map as a pure state machine (no I/O): Flare's cluster transitions (flare-notes §3.2–3.4).
 * Every successful change bumps the version; a refused one leaves the map as it was.
 */
import {
  compareKeys,
  type NodeEntry,
  type NodeMapData,
  type NodeState,
  nodeKey,
  type Role,
} from "../protocol/node-map.js";

/** Flare's first thread_type (`default_thread_type`). */
const FIRST_THREAD_TYPE = 16;

export type Change =
  | { ok: true; changed: boolean; events: string[]; promoted?: string }
  /** `leader`: refused because this index does not lead (set: the one that does, when known). */
  | { ok: false; error: string; leader?: string };

const refused = (error: string): Change => ({ ok: false, error });

export class NodeMap {
  private readonly nodes = new Map<string, NodeEntry>();
  version: number;
  private nextThreadType: number;

  constructor(data?: NodeMapData) {
    this.version = 0;
    this.nextThreadType = FIRST_THREAD_TYPE;
    this.reset(data);
  }

  /** Becomes `data` (the map another index committed, or the last one this one did). */
  reset(data: NodeMapData | undefined): void {
    this.version = data?.version ?? 0;
    this.nextThreadType = data?.nextThreadType ?? FIRST_THREAD_TYPE;
    this.nodes.clear();
    for (const n of data?.nodes ?? []) this.nodes.set(nodeKey(n.host, n.port), { ...n });
  }

  toData(): NodeMapData {
    return { version: this.version, nextThreadType: this.nextThreadType, nodes: this.list() };
  }

  /** Nodes sorted by key. */
  list(): NodeEntry[] {
    return [...this.nodes.entries()].sort(([a], [b]) => compareKeys(a, b)).map(([, n]) => ({ ...n }));
  }

  /** Nodes as clients of the index see them: a balance that waits for a rebuild stays inside. */
  published(): Omit<NodeEntry, "pendingBalance">[] {
    return this.list().map(({ pendingBalance: _, ...n }) => n);
  }

  get(host: string, port: number): NodeEntry | undefined {
    const n = this.nodes.get(nodeKey(host, port));
    return n === undefined ? undefined : { ...n };
  }

  /** Partitions that serve: active masters, and down masters that still reserve theirs. */
  partitionCount(): number {
    let n = 0;
    for (const node of this.nodes.values())
      if (node.role === "master" && (node.state === "active" || node.state === "down")) n++;
    return n;
  }

  /** `node add` from a starting node: a new key joins as an active proxy. */
  add(host: string, port: number, httpPort?: number, leaseMs?: number): Change {
    const existing = this.nodes.get(nodeKey(host, port));
    if (existing !== undefined) {
      // A node the monitor has not yet seen die is still the live one: the newcomer is refused.
      if (existing.state !== "down") return refused(`node ${nodeKey(host, port)} is already active`);
      if (existing.httpPort === httpPort && existing.leaseMs === leaseMs)
        return { ok: true, changed: false, events: [] };
      if (httpPort === undefined) delete existing.httpPort;
      else existing.httpPort = httpPort;
      if (leaseMs === undefined) delete existing.leaseMs;
      else existing.leaseMs = leaseMs;
      return this.commit([
        `node http port ${nodeKey(host, port)} ${httpPort ?? "none"}, lease ${leaseMs ?? "none"}`,
      ]);
    }
    this.nodes.set(nodeKey(host, port), {
      host,
      port,
      role: "proxy",
      state: "active",
      partition: -1,
      balance: 0,
      threadType: this.nextThreadType++,
      ...(httpPort === undefined ? {} : { httpPort }),
      ...(leaseMs === undefined ? {} : { leaseMs }),
    });
    return this.commit([`node added ${nodeKey(host, port)}`]);
  }

  /** `node role <host> <port> <role> [<balance>] [<partition>]` (missing values: -1). */
  setRole(host: string, port: number, role: Role, balance = -1, partition = -1): Change {
    const key = nodeKey(host, port);
    const node = this.nodes.get(key);
    if (node === undefined) return refused(`unknown node ${key}`);
    if (node.state === "down") return refused(`node ${key} is down`);
    const from = `${node.role}/${node.state}`;

    if (node.role === "proxy") {
      if (role === "proxy") return { ok: true, changed: false, events: [] };
      if (role === "master") {
        if (balance <= 0) return refused("a master needs a balance above 0");
        const count = this.partitionCount();
        const current = this.masterOf(partition);
        if (partition === count && current === undefined) {
          node.role = "master";
          node.partition = partition;
          node.balance = balance;
          node.state = partition === 0 ? "active" : "prepare";
        } else if (current !== undefined && current.state === "down") {
          // Replacing a dead master that reserved its partition.
          current.role = "proxy";
          current.partition = -1;
          current.balance = 0;
          node.role = "master";
          node.partition = partition;
          node.balance = balance;
          node.state = "active";
        } else {
          return refused(
            `partition ${partition} is neither the next one (${count}) nor one whose master is down`,
          );
        }
        return this.commit([`role set ${key} master partition ${partition} (${node.state})`]);
      }
      const master = this.masterOf(partition);
      if (master === undefined || master.state === "down")
        return refused(`partition ${partition} has no live master`);
      node.role = "slave";
      node.partition = partition;
      node.state = "prepare";
      // Reads go to it only once it holds the data; the balance asked for waits until then
      // (Flare dropped it and needed a second command).
      node.balance = master.state === "prepare" ? Math.max(0, balance) : 0;
      if (master.state !== "prepare") node.pendingBalance = Math.max(0, balance);
      return this.commit([`role set ${key} slave partition ${partition} (prepare)`]);
    }

    if (node.role === "master") {
      if (role === "master") return this.setBalance(node, balance);
      if (role === "slave") return refused(`a ${from} cannot become a slave`);
      if (node.state === "active") return refused(`an active master cannot become a proxy`);
      for (const s of this.slavesOf(node.partition)) if (s.state === "prepare") toProxy(s);
      toProxy(node);
      return this.commit([`role set ${key} proxy (was ${from})`]);
    }

    // slave
    if (role === "master") return refused(`a ${from} cannot become a master`);
    if (role === "slave") {
      if (node.state === "prepare" && this.masterOf(node.partition)?.state !== "prepare") {
        return refused("a preparing slave's balance changes once it is active");
      }
      return this.setBalance(node, balance);
    }
    if (node.state === "active" && !this.balanceAllowed(node, 0)) {
      return refused(`partition ${node.partition} would have no read weight left`);
    }
    toProxy(node);
    return this.commit([`role set ${key} proxy (was ${from})`]);
  }

  /** `node state <host> <port> <active|down|ready>`. */
  setState(host: string, port: number, state: NodeState): Change {
    switch (state) {
      case "down":
        return this.down(host, port);
      case "active":
        return this.up(host, port);
      case "ready": {
        const key = nodeKey(host, port);
        const node = this.nodes.get(key);
        if (node === undefined) return refused(`unknown node ${key}`);
        if (node.state !== "prepare")
          return refused(`only a preparing node can be ready (${key} is ${node.state})`);
        node.state = "ready";
        return this.commit([`node ready ${key}`]);
      }
      case "prepare":
        return refused("prepare is set through node role");
    }
  }

  /** `node remove`: only a down node that no longer reserves a partition. */
  remove(host: string, port: number): Change {
    const key = nodeKey(host, port);
    const node = this.nodes.get(key);
    if (node === undefined) return refused(`unknown node ${key}`);
    if (node.state !== "down") return refused(`node ${key} is not down`);
    if (node.role === "master" && !this.othersLiveIn(node))
      return refused(`node ${key} still reserves partition ${node.partition}`);
    this.nodes.delete(key);
    return this.commit([`node removed ${key}`]);
  }

  /**
   * A node died (monitor) or stopped (`shutdown`). A dead active master hands its partition to the
   * active slave that applied the most of its writes (when `applied` tells), else the one with the
   * highest balance (ties: smallest key); with none, it keeps its role and partition so the
   * partition stays reserved.
   */
  down(host: string, port: number, applied?: ReadonlyMap<string, number>): Change {
    const key = nodeKey(host, port);
    const node = this.nodes.get(key);
    if (node === undefined) return refused(`unknown node ${key}`);
    if (node.state === "down") return { ok: true, changed: false, events: [] };
    const events = [`node down ${key}`];
    let preserved = false;
    let promoted: string | undefined;
    if (node.role === "master" && node.state === "active") {
      events.push(`master down ${key}: looking for an active slave of partition ${node.partition}`);
      const slaves = this.slavesOf(node.partition);
      let pick: NodeEntry | undefined;
      // Most replicated writes applied first (when known), then the highest balance, then the smallest key.
      const progress = (n: NodeEntry): number => applied?.get(nodeKey(n.host, n.port)) ?? -1;
      for (const s of slaves) {
        if (s.state !== "active") continue;
        const ahead = pick === undefined || progress(s) > progress(pick);
        if (ahead || (progress(s) === progress(pick as NodeEntry) && s.balance > (pick as NodeEntry).balance))
          pick = s;
      }
      if (pick !== undefined) {
        if (slaves.reduce((sum, s) => sum + s.balance, 0) === 0) pick.balance += 1;
        pick.role = "master";
        promoted = nodeKey(pick.host, pick.port);
        events.push(`new master found ${promoted} for partition ${node.partition}`);
      } else {
        preserved = true;
        events.push(`no active slave for partition ${node.partition}: it stays reserved`);
      }
    } else if (node.role === "master") {
      for (const s of this.slavesOf(node.partition)) toProxy(s);
    }
    node.state = "down";
    if (!preserved) {
      node.role = "proxy";
      node.partition = -1;
      node.balance = 0;
    }
    events.push(`node state set to down ${key}`);
    const change = this.commit(events);
    return promoted === undefined || !change.ok ? change : { ...change, promoted };
  }

  /** A node is reachable again, or finished preparing. */
  up(host: string, port: number): Change {
    const key = nodeKey(host, port);
    const node = this.nodes.get(key);
    if (node === undefined) return refused(`unknown node ${key}`);
    if (node.state === "active") return { ok: true, changed: false, events: [] };
    if (node.state === "prepare" && node.role !== "slave")
      return refused(`a preparing ${node.role} becomes ready, not active`);
    if (node.state === "ready" || node.state === "prepare") {
      node.state = "active";
      if (node.pendingBalance !== undefined) node.balance = node.pendingBalance;
      delete node.pendingBalance;
      return this.commit([`node active ${key}`]);
    }
    // Back from down: it rejoins as a proxy unless it still reserves its partition alone.
    if (!(node.role === "master" && !this.othersLiveIn(node))) toProxy(node);
    node.state = "active";
    return this.commit([`node up ${key} as ${node.role}`]);
  }

  private setBalance(node: NodeEntry, balance: number): Change {
    if (balance < 0) return refused("balance must be 0 or more");
    if (!this.balanceAllowed(node, balance))
      return refused(`partition ${node.partition} would have no read weight`);
    if (node.balance === balance) return { ok: true, changed: false, events: [] };
    node.balance = balance;
    return this.commit([`balance set ${nodeKey(node.host, node.port)} ${balance}`]);
  }

  /** Flare's balance check: the node has a partition and the partition keeps some read weight. */
  private balanceAllowed(node: NodeEntry, balance: number): boolean {
    if (node.partition < 0) return false;
    let sum = 0;
    for (const n of this.nodes.values()) {
      if (n.partition !== node.partition || n.role === "proxy") continue;
      sum += n === node ? balance : n.balance;
    }
    return sum > 0;
  }

  private masterOf(partition: number): NodeEntry | undefined {
    for (const n of this.nodes.values()) if (n.role === "master" && n.partition === partition) return n;
    return undefined;
  }

  /** Slaves of a partition in key order (Flare walks its partition map sorted). */
  private slavesOf(partition: number): NodeEntry[] {
    return [...this.nodes.entries()]
      .filter(([, n]) => n.role === "slave" && n.partition === partition)
      .sort(([a], [b]) => compareKeys(a, b))
      .map(([, n]) => n);
  }

  private othersLiveIn(node: NodeEntry): boolean {
    for (const n of this.nodes.values()) {
      if (n !== node && n.partition === node.partition && n.state !== "down" && n.role !== "proxy")
        return true;
    }
    return false;
  }

  private commit(events: string[]): Change {
    this.version++;
    return { ok: true, changed: true, events };
  }
}

function toProxy(n: NodeEntry): void {
  delete n.pendingBalance;
  n.role = "proxy";
  n.state = "active";
  n.partition = -1;
  n.balance = 0;
}
