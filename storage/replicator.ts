/**
 * Master -> slave replication. Every write the master applies is numbered and kept in a bounded
 * recent-write log; each slave has a link that sends the log in order as Flare does (`set` with the
 * final value, flags, absolute expiry and the master's version; versioned `delete`), pipelined, and
 * counts the replies. A slave that drops or refuses is re-sent everything after what it
 * acknowledged (catch-up); one that fell out of the log gets every item again.
 */
import { connect, type Socket } from "node:net";
import { ServerError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { authenticate, type Credentials } from "../protocol/cluster-auth.js";
import { NOT_A_MASTER } from "../protocol/cluster-member.js";
import { LineReader } from "../protocol/line-reader.js";
import { type NodeEntry, nodeKey } from "../protocol/node-map.js";
import type { Item } from "./engine.js";
import type { Store } from "./store.js";

export interface ReplicatorOptions {
  /** Writes kept for catch-up; also the most a slave may lag before the master's clients wait. */
  logSize: number;
  /** How the master proves itself to its slaves. */
  credentials: Credentials;
  /** The master's own map version (the epoch a slave's refusal is compared with). */
  mapVersion: () => number;
  /** A slave knows a newer map in which this node is not its master. */
  fenced: (peerVersion: number) => void;
}

/** A write a slave refused: sync-mode writers waiting for it get this instead of an ack. */
export class ReplicationRefused extends ServerError {}

interface Entry {
  seq: number;
  key: string;
  text: Buffer;
}

/** Which keys' writes a link carries: all (a slave), or those moving to a partition being added. */
type KeyFilter = ((key: string) => boolean) | undefined;

/** Bytes sent to a slave in one write before its replies are awaited. */
const SEND_CHUNK = 256 * 1024;
const RECONNECT_MS = 100;
const MAX_ACK_LINE = 4096;

/** `seq` travels in the prefix (`<host:port@seq>`): slaves report how far they got, for promotion. */
export function encodeWrite(
  self: string,
  key: string,
  item: Item | null,
  version: bigint,
  now: number,
  seq?: number,
  expiryOnly = false,
): Buffer {
  const from = seq === undefined ? self : `${self}@${seq}`;
  if (item === null) return Buffer.from(`<${from}>delete ${key} 0 ${version}\r\n`, "latin1");
  const exptime = item.expiresAt === 0 ? 0 : item.expiresAt <= now ? -1 : Math.ceil(item.expiresAt / 1000);
  // Only the expiry changed (touch, gat): the version did not, so a set would be refused as old.
  if (expiryOnly) return Buffer.from(`<${from}>touch ${key} ${exptime}\r\n`, "latin1");
  const head = Buffer.from(
    `<${from}>set ${key} ${item.flags} ${exptime} ${item.value.length} ${version}\r\n`,
    "latin1",
  );
  return Buffer.concat([head, item.value, CRLF]);
}
const CRLF = Buffer.from("\r\n");

export class Replicator {
  private readonly entries: Entry[] = [];
  /** Index in `entries` of the oldest kept entry (the array is trimmed in steps). */
  private head = 0;
  seq = 0;
  private readonly links = new Map<string, SlaveLink>();
  private self = "";

  constructor(
    private readonly store: Store,
    private readonly options: ReplicatorOptions,
    private readonly log: Logger,
  ) {
    store.onApplied = (key, item, version, expiryOnly) => this.applied(key, item, version, expiryOnly);
  }

  /**
   * Follows the map: as master (active, or of a partition being added), replicate to the slaves of
   * the partition; as an active master while a partition is being added (`added`, its master),
   * also send that master the writes of the keys moving to it (`keyPartition` tells which).
   */
  follow(
    selfKey: string,
    nodes: NodeEntry[],
    added?: NodeEntry,
    keyPartition?: (key: string, partitions: number) => number,
  ): void {
    this.self = selfKey;
    const me = nodes.find((n) => nodeKey(n.host, n.port) === selfKey);
    const wanted = new Map<string, { node: NodeEntry; accepts: KeyFilter }>();
    const master = me?.role === "master" && me.state !== "down";
    if (master) {
      for (const n of nodes) {
        if (n.role === "slave" && n.partition === me.partition && n.state !== "down")
          wanted.set(nodeKey(n.host, n.port), { node: n, accepts: undefined });
      }
      if (me.state === "active" && added !== undefined && keyPartition !== undefined) {
        const target = added.partition;
        wanted.set(nodeKey(added.host, added.port), {
          node: added,
          accepts: (key) => keyPartition(key, target + 1) === target,
        });
      }
    }
    // A slave that left the map no longer holds up writes; but a node that stopped being master
    // must not acknowledge the sync writes still waiting: no slave may have them. Nor may a write
    // of a moving key be acknowledged once its link to the new partition ends (activated, or the
    // new master gone): the client retries it where the map now puts the key.
    const demoted = master
      ? undefined
      : new ReplicationRefused(
          "UNAVAILABLE",
          `${NOT_A_MASTER} (role ${me?.role ?? "unknown"}, state ${me?.state ?? "unknown"})`,
        );
    const moved = new ReplicationRefused("UNAVAILABLE", `${NOT_A_MASTER} (the key moved to a new partition)`);
    for (const [key, link] of this.links) {
      const want = wanted.get(key);
      if (want === undefined || (want.accepts === undefined) !== (link.accepts === undefined)) {
        link.close(link.accepts === undefined ? demoted : moved);
        this.links.delete(key);
        this.log.info("replication stopped", { slave: key, moving: link.accepts !== undefined });
      }
    }
    for (const [key, { node: n, accepts }] of wanted) {
      if (this.links.has(key)) continue;
      // A new slave is rebuilt by its own dump, a new partition by its copy; replication starts
      // with what comes next.
      this.links.set(
        key,
        new SlaveLink(
          this,
          this.options,
          key,
          n.host,
          n.port,
          this.seq,
          accepts,
          this.log.child({ slave: key }),
        ),
      );
      this.log.info("replication started", { slave: key, fromSeq: this.seq, moving: accepts !== undefined });
    }
    // Only one partition is added at a time: at most one link carries moving keys.
    this.moving = [...this.links.values()].find((l) => l.accepts !== undefined);
    if (this.links.size === 0) this.trim(true);
  }

  /** The link to the master of a partition being added, if any. */
  private moving: SlaveLink | undefined;

  get active(): boolean {
    return this.links.size > 0;
  }

  /**
   * Resolves when every slave linked now has acknowledged `seq`, or dropped out; rejects with
   * ReplicationRefused when one refused it.
   */
  waitAll(seq: number): Promise<void> {
    const waits = [...this.links.values()].map((l) => l.waitFor(seq));
    return waits.length === 0 ? Promise.resolve() : Promise.all(waits).then(() => undefined);
  }

  /**
   * The one wait of every write on a master, whatever front it came by (memcached, HTTP): for the
   * write just applied, sync mode waits until every slave has it; async mode only while a slave
   * lags past the log (backpressure). undefined: nothing to wait for. Rejects when a slave refused.
   */
  acknowledged(mode: "async" | "sync"): Promise<void> | undefined {
    if (this.links.size === 0) return undefined;
    if (mode === "sync") return this.waitAll(this.seq);
    // A write of a key moving to a new partition is acknowledged once that partition has it, in
    // either mode: the old master stops taking the key when the partition goes live.
    const capacity = this.waitCapacity();
    if (this.moving === undefined) return capacity;
    const moved = this.moving.waitFor(this.seq);
    return capacity === undefined ? moved : Promise.all([moved, capacity]).then(() => undefined);
  }

  /** Resolves when no slave lags more than the log can hold: async writers wait here (backpressure). */
  waitCapacity(): Promise<void> | undefined {
    const limit = this.options.logSize;
    const lagging = [...this.links.values()].filter((l) => this.seq - l.acked >= limit);
    if (lagging.length === 0) return undefined;
    return Promise.all(lagging.map((l) => l.waitFor(this.seq - Math.floor(limit / 2)))).then(() => undefined);
  }

  /** Per slave: writes not yet acknowledged. */
  lag(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [key, link] of this.links) out[key] = this.seq - link.acked;
    return out;
  }

  close(): void {
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }

  /** Entries after `seq`, or null when some were already dropped from the log. */
  since(seq: number): Entry[] | null {
    const first = this.entries[this.head];
    if (first === undefined) return seq >= this.seq ? [] : null;
    if (seq + 1 < first.seq) return null;
    return this.entries.slice(this.head + (seq + 1 - first.seq));
  }

  /** Everything the store holds (that `accepts`), as writes, for a link that fell out of the log. */
  async *everything(accepts: KeyFilter): AsyncIterable<Buffer> {
    for await (const [key, item] of this.store.engine.scan())
      if (accepts === undefined || accepts(key))
        yield encodeWrite(this.self, key, item, item.version, Date.now());
  }

  private applied(key: string, item: Item | null, version: bigint, expiryOnly: boolean): void {
    if (this.links.size === 0) return;
    this.seq++;
    this.entries.push({
      seq: this.seq,
      key,
      text: encodeWrite(this.self, key, item, version, Date.now(), this.seq, expiryOnly),
    });
    this.trim(false);
    for (const link of this.links.values()) link.pump();
  }

  private trim(all: boolean): void {
    if (all) {
      this.entries.length = 0;
      this.head = 0;
      return;
    }
    if (this.entries.length - this.head > this.options.logSize) this.head++;
    // Compact now and then rather than shifting on every write.
    if (this.head > 4096 && this.head > this.entries.length / 2) {
      this.entries.splice(0, this.head);
      this.head = 0;
    }
  }
}

class SlaveLink {
  acked: number;
  private sent: number;
  private socket: Socket | undefined;
  private connecting = false;
  private closed = false;
  /** Seqs sent and awaiting their reply line, in order. */
  private inflight: number[] = [];
  private readonly reader = new LineReader();
  private waiters: { seq: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  private resyncing = false;

  constructor(
    private readonly replicator: Replicator,
    private readonly options: ReplicatorOptions,
    private readonly name: string,
    private readonly host: string,
    private readonly port: number,
    from: number,
    readonly accepts: KeyFilter,
    private readonly log: Logger,
  ) {
    this.acked = from;
    this.sent = from;
    this.connect();
  }

  waitFor(seq: number): Promise<void> {
    if (this.acked >= seq || this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  /** Ends the link: writes waiting for this slave are released, or failed with `err`. */
  close(err?: Error): void {
    this.closed = true;
    this.socket?.destroy();
    for (const w of this.waiters.splice(0)) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
  }

  pump(): void {
    const socket = this.socket;
    if (socket === undefined || this.connecting || this.resyncing || socket.writableNeedDrain) {
      this.passOver();
      return;
    }
    const entries = this.replicator.since(this.sent);
    if (entries === null) {
      void this.resync();
      return;
    }
    if (entries.length === 0) return;
    socket.cork();
    let bytes = 0;
    const accepts = this.accepts;
    for (const e of entries) {
      this.sent = e.seq;
      if (accepts !== undefined && !accepts(e.key)) {
        // Not sent: acknowledged with the reply to the last write sent before it (acks are
        // cumulative), or at once when none is awaited.
        const last = this.inflight.length - 1;
        if (last < 0) this.ack(e.seq);
        else this.inflight[last] = e.seq;
        continue;
      }
      socket.write(e.text);
      this.inflight.push(e.seq);
      bytes += e.text.length;
      if (bytes >= SEND_CHUNK) break;
    }
    socket.uncork();
  }

  /**
   * A link that carries only moving keys, while it cannot send: the writes of other keys at the
   * head of the log owe it nothing, so they are acknowledged now rather than held up until the
   * link is back (or the partition being added is given up).
   */
  private passOver(): void {
    const accepts = this.accepts;
    if (accepts === undefined || this.inflight.length > 0) return;
    for (const e of this.replicator.since(this.sent) ?? []) {
      if (accepts(e.key)) return;
      this.sent = e.seq;
      this.ack(e.seq);
    }
  }

  private connect(): void {
    if (this.closed) return;
    this.connecting = true;
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    this.socket = socket;
    socket.on("error", () => {});
    socket.on("close", () => this.dropped("connection closed"));
    socket.on("connect", () => {
      authenticate(socket, this.options.credentials, 5000).then(
        () => {
          if (this.socket !== socket) return;
          this.connecting = false;
          socket.on("data", (d: Buffer) => this.onData(d));
          socket.on("drain", () => this.pump());
          this.pump();
        },
        (err: Error) => this.log.warn("replication link not authenticated", { err: err.message }),
      );
    });
  }

  private onData(d: Buffer): void {
    for (const line of this.reader.push(d)) {
      const seq = this.inflight.shift();
      if (
        line.startsWith("SERVER_ERROR") ||
        line.startsWith("CLIENT_ERROR") ||
        line === "ERROR" ||
        seq === undefined
      ) {
        // Refused: start again after the last ack, once the slave or this master has caught up.
        this.log.warn("replication refused", { reply: line });
        this.refused(line);
        this.socket?.destroy();
        return;
      }
      if (seq > 0) this.ack(seq);
    }
    // A slave answers each write with one short line; anything longer is not one.
    if (this.reader.pending > MAX_ACK_LINE) {
      this.log.warn("replication refused", { reply: "reply line too long" });
      this.socket?.destroy();
      return;
    }
    if (this.inflight.length < 64) this.pump();
  }

  /**
   * A slave whose map is older than ours will take the writes once it has caught up: its waiters
   * keep waiting. Any other refusal fails them: a sync write is acknowledged only once every slave
   * has it. A slave with a newer map that refuses us means we are a stale master: fenced.
   */
  private refused(line: string): void {
    const stale = /^SERVER_ERROR stale master: map version (\d+)/.exec(line);
    const peerVersion = stale === null ? undefined : Number(stale[1]);
    const mine = this.options.mapVersion();
    if (peerVersion !== undefined && peerVersion < mine) return;
    let err: ReplicationRefused;
    if (peerVersion !== undefined) {
      this.options.fenced(peerVersion);
      err = new ReplicationRefused(
        "UNAVAILABLE",
        `${NOT_A_MASTER} (fenced: slave ${this.name} has map version ${peerVersion}, this node ${mine})`,
      );
    } else {
      err = new ReplicationRefused("UNAVAILABLE", `replication refused by slave ${this.name}: ${line}`);
    }
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private ack(seq: number): void {
    this.acked = seq;
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.seq <= seq) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private dropped(reason: string): void {
    this.socket = undefined;
    this.inflight = [];
    this.reader.clear();
    this.sent = this.acked;
    this.resyncing = false;
    if (this.closed) return;
    // Sync-mode writers do not wait for a slave that is gone; the index decides what it is now.
    for (const w of this.waiters.splice(0)) w.resolve();
    this.log.debug("replication link dropped", { reason });
    setTimeout(() => this.connect(), RECONNECT_MS).unref();
  }

  /** The slave missed more than the log holds: send it every item again, then carry on. */
  private async resync(): Promise<void> {
    const socket = this.socket;
    if (socket === undefined) return;
    this.resyncing = true;
    const upTo = this.replicator.seq;
    this.log.warn("slave fell out of the replication log: sending every item", { lag: upTo - this.acked });
    try {
      for await (const text of this.replicator.everything(this.accepts)) {
        if (this.socket !== socket || this.closed) return;
        this.inflight.push(0);
        if (!socket.write(text)) await new Promise((r) => socket.once("drain", r));
      }
      this.sent = upTo;
      this.inflight.push(upTo);
      socket.write("ping\r\n");
    } finally {
      if (this.socket === socket) this.resyncing = false;
    }
    this.pump();
  }
}
