/**
 * A node's place in a cluster: it registers with the index (`node add`), keeps the map the index
 * pushes (`node sync`), and serves writes only in the role that map gives it (fencing). The map
 * version is the epoch: a slave takes replicated writes only from the master its map names, and a
 * master told of a newer map by a peer stops taking writes until that map reaches it. With a
 * master lease, a master that has not heard from the index for that long stops taking writes too.
 */
import { ServerError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { Credentials } from "./cluster-auth.js";
import { LineClient, oneLine, untilEnd } from "./line-client.js";
import { type NodeEntry, nodeKey, parseNodeLine, statsNodesLines } from "./node-map.js";

export interface ClusterOptions {
  /** The index servers: one, or several sharing a map, of which the leader takes changes. */
  indexes: { host: string; port: number }[];
  /** How the node names itself in the map. */
  serverName: string;
  /** How long to keep asking to be registered (the index may not have seen our old self die yet). */
  registerTimeoutMs: number;
  /** How this member proves itself to the index. */
  credentials: Credentials;
  /**
   * Milliseconds a master may go without word from the index before it stops taking writes:
   * "auto" takes the index's suggestion (META master-lease), 0 = no lease.
   */
  masterLease?: number | "auto";
}

/**
 * The index's clock for pings and `META time`: milliseconds that run on across index restarts
 * (wall time at process start plus monotonic time since).
 */
export function indexClock(): number {
  return Math.floor(performance.timeOrigin + performance.now());
}

/** Pings whose offsets are remembered (seconds of pings at the usual monitor interval). */
const OFFSET_WINDOW = 8;

/** How an index that does not lead refuses a change (it names the leader). */
const NOT_LEADER = "SERVER_ERROR not the leader index";

/** The start of every refusal a proxy answers by waiting for the next map. */
export const NOT_A_MASTER = "not a master";

export class ClusterMember {
  private nodes: NodeEntry[] = [];

  /** The node map as last pushed. */
  get map(): readonly NodeEntry[] {
    return this.nodes;
  }
  version = 0;
  /** How far this node got in its master's replication stream (the index promotes the furthest). */
  replicationSeq = 0;
  /** The index's `meta`: key-hash-algorithm, partition-modular-hint, partition-modular-virtual, ... */
  readonly meta = new Map<string, string>();
  private masterKey = "";
  private readonly listeners: ((
    nodes: NodeEntry[],
    before: NodeEntry | undefined,
    after: NodeEntry | undefined,
  ) => void)[] = [];
  private key = "";
  private port = 0;
  private httpPort: number | undefined;
  /** A peer named a map newer than ours in which we are not master: no writes below that version. */
  private fencedBelow = 0;
  /** Lease length in ms (0 = none), and when the index last sent word that arrived (performance.now()). */
  private leaseMs = 0;
  private heardAt = 0;
  /** Recent (arrival - index's send time): the least is the clocks' offset plus the least delay. */
  private readonly offsets: number[] = [];

  constructor(
    private readonly options: ClusterOptions,
    private readonly log: Logger,
  ) {}

  /** The port the node listens on (known once it listens; port 0 in config means any). */
  listening(port: number, httpPort?: number): void {
    this.port = port;
    this.httpPort = httpPort;
    this.key = nodeKey(this.options.serverName, port);
  }

  /** This node's entry in the current map. */
  self(): NodeEntry | undefined {
    return this.nodes.find((n) => nodeKey(n.host, n.port) === this.key);
  }

  /**
   * Why a write is refused here, or undefined. Clients write to the active master only, while it is
   * not fenced and holds its lease; a slave (active or rebuilding) takes the writes replicated by
   * `from`, the peer that sent them, only when its map names that peer master of its partition.
   */
  writeRefusal(from: string | undefined, key?: string): string | undefined {
    const me = this.self();
    if (from !== undefined) {
      if (me?.role === "slave" && me.state !== "down") {
        const master = this.masterOf(me.partition);
        if (master !== undefined && nodeKey(master.host, master.port) === from) return undefined;
      }
      // A partition being added takes the moved keys' writes from the masters that held them.
      if (me?.role === "master" && (me.state === "prepare" || me.state === "ready")) {
        const source = this.nodes.find((n) => nodeKey(n.host, n.port) === from);
        if (source?.role === "master" && source.state === "active" && source.partition < me.partition)
          return undefined;
      }
      // `stale master`: the sender compares the version with its own to tell who is behind.
      return `stale master: map version ${this.version} does not make ${from} master of this node`;
    }
    if (me?.role === "master" && me.state === "active") {
      if (this.version < this.fencedBelow)
        return `${NOT_A_MASTER} (fenced: a peer has map version ${this.fencedBelow}, this node ${this.version})`;
      if (this.leaseMs > 0 && performance.now() - this.heardAt > this.leaseMs)
        return `${NOT_A_MASTER} (master lease expired: no word from the index for ${this.leaseMs} ms)`;
      // A key another partition owns now (one was added): its writes go to that partition's master.
      if (key !== undefined && this.owned()?.(key) === false)
        return `${NOT_A_MASTER} (the key belongs to another partition)`;
      return undefined;
    }
    return `${NOT_A_MASTER} (role ${me?.role ?? "unknown"}, state ${me?.state ?? "unknown"})`;
  }

  /**
   * Which keys this node's partition owns under the current map, when that is not every key (one
   * partition, or not a member of one): a partition being added owns what it will own.
   */
  owned(): ((key: string) => boolean) | undefined {
    if (this.ownedBy === null) {
      const me = this.self();
      const keyPartition = this.keyPartition;
      const partitions = Math.max(this.partitions, (me?.partition ?? 0) + 1);
      const mine = me?.partition ?? -1;
      this.ownedBy =
        mine < 0 || keyPartition === undefined || partitions <= 1
          ? undefined
          : (key) => keyPartition(key, partitions) === mine;
    }
    return this.ownedBy;
  }

  /**
   * Whether this node answers a client's request for `key` itself; otherwise the request goes to
   * the node that owns the key (Flare's flared proxies it too): an active master takes the writes
   * and reads of its partition's keys, an active slave the reads; a slave that is rebuilding, a
   * partition being added and a proxy node hold nothing a client may rely on yet. A node not in
   * the map, or down, answers itself (its refusals say why).
   */
  servesHere(key: string, write: boolean): boolean {
    let place = this.place;
    if (place === null) {
      place = this.placeOf();
      this.place = place;
    }
    const answer = write ? place.writes : place.reads;
    if (answer !== "owned") return answer;
    return this.owned()?.(key) ?? true;
  }

  private placeOf(): { reads: boolean | "owned"; writes: boolean | "owned" } {
    const me = this.self();
    if (me === undefined || me.state === "down") return { reads: true, writes: true };
    if (me.state !== "active") return { reads: false, writes: false };
    if (me.role === "master") return { reads: "owned", writes: "owned" };
    if (me.role === "slave") return { reads: "owned", writes: false };
    return { reads: false, writes: false };
  }

  /** servesHere()'s view of this node for the current map; null: not worked out since it changed. */
  private place: { reads: boolean | "owned"; writes: boolean | "owned" } | null = null;

  /** owned()'s answer for the current map; null: not worked out since the map or hash changed. */
  private ownedBy: ((key: string) => boolean) | undefined | null = null;
  private hashOf: ((key: string, partitions: number) => number) | undefined;

  /** The partition of a key among `partitions` (the index's hash and resolver), once known. */
  get keyPartition(): ((key: string, partitions: number) => number) | undefined {
    return this.hashOf;
  }

  set keyPartition(f: ((key: string, partitions: number) => number) | undefined) {
    this.hashOf = f;
    this.ownedBy = null;
    this.place = null;
  }

  /** The serving partitions of the current map (see partitionCount), kept for the write path. */
  private partitions = 1;

  /**
   * A slave refused our replication naming its map version: if it is newer than ours, another map
   * has moved on without us (we were cut off or frozen), so client writes stop until it reaches us.
   */
  refusedBy(peerVersion: number): void {
    if (peerVersion <= this.version || peerVersion <= this.fencedBelow) return;
    this.fencedBelow = peerVersion;
    this.log.warn("fenced", { reason: "a peer knows a newer map", peerVersion, mapVersion: this.version });
  }

  /**
   * The index pinged this node at `sentAt` (its clock). The lease runs from when the ping was sent,
   * not when it was read: a ping that waited in the socket while this process was frozen (SIGSTOP,
   * a long pause) is old news and must not renew it. The send time is mapped onto this clock by the
   * least offset seen over recent pings; a window, so a new index process with another clock is
   * learned after a few pings.
   */
  heardFromIndex(sentAt: number): void {
    const now = performance.now();
    this.offsets.push(now - sentAt);
    if (this.offsets.length > OFFSET_WINDOW) this.offsets.shift();
    const sent = sentAt + Math.min(...this.offsets);
    if (sent > this.heardAt) this.heardAt = sent;
  }

  /** Counts a slave's progress; a new partition's master takes several masters' streams: not counted. */
  replicated(seq: number): void {
    if (this.masterKey !== "" && seq > this.replicationSeq) this.replicationSeq = seq;
  }

  get selfKey(): string {
    return this.key;
  }

  /** Called with every new map, and this node's entry before and after it. */
  onMap(
    listener: (nodes: NodeEntry[], before: NodeEntry | undefined, after: NodeEntry | undefined) => void,
  ): void {
    this.listeners.push(listener);
  }

  /** Serving partitions: active masters, and down masters that still reserve theirs. */
  partitionCount(): number {
    return this.nodes.filter((n) => n.role === "master" && (n.state === "active" || n.state === "down"))
      .length;
  }

  /**
   * The master of a partition being added (preparing or ready): an active master sends it the
   * writes of the keys that will move to it.
   */
  addedMaster(): NodeEntry | undefined {
    const count = this.partitions;
    return this.nodes.find(
      (n) => n.role === "master" && n.partition === count && (n.state === "prepare" || n.state === "ready"),
    );
  }

  masterOf(partition: number): NodeEntry | undefined {
    return this.nodes.find((n) => n.role === "master" && n.partition === partition);
  }

  /** The index that last took a change from us: asked first next time. */
  private preferred = 0;

  /** The indexes in the order to ask them: the one that last took a change first. */
  private indexOrder(): { host: string; port: number }[] {
    const list = this.options.indexes;
    return list.map((_, i) => list[(this.preferred + i) % list.length] as { host: string; port: number });
  }

  /**
   * Asks the index to change something (a rebuilt slave reports itself active, a proxy suspects a
   * node). With several indexes, those that do not lead or do not answer are passed over.
   */
  async tellIndex(command: string, timeoutMs = 5000): Promise<string> {
    const { credentials } = this.options;
    let last = "";
    for (const [i, { host, port }] of this.indexOrder().entries()) {
      try {
        const [reply] = await LineClient.ask(host, port, command, oneLine, timeoutMs, credentials);
        last = reply ?? "";
        if (!last.startsWith(NOT_LEADER)) {
          this.preferred = (this.preferred + i) % this.options.indexes.length;
          return last;
        }
      } catch (err) {
        if (i === this.options.indexes.length - 1) throw err;
      }
    }
    return last;
  }

  statsNodes(): string[] {
    return statsNodesLines(this.nodes);
  }

  async register(): Promise<void> {
    const { serverName } = this.options;
    const port = this.port;
    const deadline = Date.now() + this.options.registerTimeoutMs;
    for (;;) {
      let reason = "no index answered";
      for (const [i, { host, port: indexPort }] of this.indexOrder().entries()) {
        try {
          const client = await LineClient.connect(host, indexPort, 2000, this.options.credentials);
          try {
            // How keys map to partitions is the index's to say (Flare's nodes ask `meta` too), and
            // with it the lease a master should hold.
            for (const line of await client.request("meta\r\n", untilEnd, 5000)) {
              const m = /^META (\S+) (\S+)$/.exec(line);
              if (m !== null) this.meta.set(m[1] as string, m[2] as string);
            }
            this.startLease();
            // flare-ts words after Flare's four: the HTTP port (0: none), which HTTP-only proxies
            // (Workers) need, and the lease, which the index waits out before it promotes a slave.
            const extra = ` ${this.httpPort ?? 0} ${this.leaseMs}`;
            const lines = await client.request(`node add ${serverName} ${port}${extra}\r\n`, untilEnd, 5000);
            if (lines.at(-1) === "END") {
              this.preferred = (this.preferred + i) % this.options.indexes.length;
              // The index may have pushed the map (with its version) before this reply arrived.
              if (this.version === 0) this.apply(0, lines.slice(0, -1));
              this.log.info("registered with index", {
                index: `${host}:${indexPort}`,
                role: this.self()?.role,
              });
              return;
            }
            reason = lines.at(-1) ?? "no reply";
          } finally {
            client.close();
          }
        } catch (err) {
          reason = (err as Error).message;
        }
      }
      if (Date.now() >= deadline) {
        const names = this.options.indexes.map((x) => `${x.host}:${x.port}`).join(",");
        throw new ServerError("UNAVAILABLE", `cannot register with index ${names}: ${reason}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** A map pushed by the index. Returns the reply line. */
  sync(version: number, lines: string[]): string {
    if (version !== 0 && this.version !== 0 && version < this.version) return "SERVER_ERROR node sync error";
    const nodes: NodeEntry[] = [];
    for (const line of lines) {
      const node = parseNodeLine(line);
      if (node === null) return "CLIENT_ERROR format error";
      nodes.push(node);
    }
    this.applyNodes(version, nodes);
    return "OK";
  }

  /** Tells the index this node is going away, so it is marked down at once (Flare's `shutdown`). */
  async leave(): Promise<void> {
    try {
      await this.tellIndex(`shutdown ${this.options.serverName} ${this.port}`, 2000);
    } catch (err) {
      this.log.warn("could not tell the index we are leaving", { err });
    }
  }

  /**
   * The lease starts at registration; "auto" follows the index's detection time. The index's
   * clock in its `meta` reply, read at once, is the first offset: a first ping that waited in the
   * socket while this process was frozen is then seen for what it is.
   */
  private startLease(): void {
    const indexTime = Number(this.meta.get("time"));
    if (Number.isFinite(indexTime) && indexTime > 0) this.offsets.push(performance.now() - indexTime);
    const configured = this.options.masterLease ?? 0;
    const suggested = Number(this.meta.get("master-lease") ?? 0);
    this.leaseMs = configured === "auto" ? (Number.isFinite(suggested) ? suggested : 0) : configured;
    this.heardAt = performance.now();
    if (this.leaseMs > 0) this.log.info("master lease", { ms: this.leaseMs });
  }

  private apply(version: number, lines: string[]): void {
    const nodes = lines.map(parseNodeLine).filter((n): n is NodeEntry => n !== null);
    this.applyNodes(version, nodes);
  }

  private applyNodes(version: number, nodes: NodeEntry[]): void {
    const before = this.self();
    this.nodes = nodes;
    this.version = version;
    this.partitions = this.partitionCount();
    this.ownedBy = null;
    this.place = null;
    const after = this.self();
    // A new master numbers its writes from 1 again.
    const master = after?.role === "slave" ? this.masterOf(after.partition) : undefined;
    const masterKey = master === undefined ? "" : nodeKey(master.host, master.port);
    if (masterKey !== this.masterKey) this.replicationSeq = 0;
    this.masterKey = masterKey;
    for (const l of this.listeners) l(nodes, before, after);
    if (before?.role !== after?.role || before?.state !== after?.state) {
      this.log.info("role changed", {
        from: before ? `${before.role}/${before.state}` : "none",
        to: after ? `${after.role}/${after.state}` : "none",
        partition: after?.partition,
        mapVersion: version,
      });
    }
  }
}
