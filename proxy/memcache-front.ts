/**
 * The proxy's memcached front: each request goes to the node that owns its key. Reads try another
 * replica at once when one fails; writes to an unreachable master wait (bounded) for the map that
 * names the new master. Replies are forwarded as the nodes wrote them.
 */
import type { Logger } from "../common/log.js";
import { PROTOCOL_VERSION } from "../common/version.js";
import type { Credentials } from "../protocol/cluster-auth.js";
import type { ClusterMember } from "../protocol/cluster-member.js";
import { encodeRequest } from "../protocol/memcache/encode.js";
import type { ReplyBuffer } from "../protocol/memcache/reply.js";
import type { MetaRequest, Request } from "../protocol/memcache/request.js";
import {
  type CommandHandler,
  type ConnectionState,
  type Execution,
  FOLLOWS,
  Later,
  type ServerCounters,
  settled,
} from "../protocol/memcache/server.js";
import {
  frontStats,
  processStats,
  type StatPairs,
  type StatsSource,
  writeStats,
} from "../protocol/memcache/stats.js";
import { metaReplyEnd, valueBlocks } from "../protocol/memcache/values.js";
import { type NodeEntry, nodeKey } from "../protocol/node-map.js";
import { ConnectionOrder, type Keys, keysOf, NONE, type Touch, touchOf } from "./connection-order.js";
import {
  type FailureHooks,
  type MapFeed,
  ProxyFailure,
  readFromReplicas,
  writeToMaster,
} from "./failover.js";
import type { Router } from "./router.js";
import {
  type BackendConnection,
  MemcacheTransport,
  type ReplyShape,
  type Sent,
} from "./transports/memcache-transport.js";
import { TransportError } from "./transports/transport.js";

export interface ProxyOptions {
  concurrency: number;
  requestTimeoutMs: number;
  writeWaitMs: number;
  version: string;
  maxConnections: number;
  /** Set: connections to nodes authenticate as this peer first (a node forwarding to another). */
  credentials?: Credentials;
}

const startsWith = (reply: Buffer, text: string): boolean =>
  reply.length >= text.length && reply.latin1Slice(0, text.length) === text;
const isServerError = (reply: Buffer): boolean => reply[0] === 83 && startsWith(reply, "SERVER_ERROR");
/** A node that is no longer master says so: the map it is in is newer than ours. */
const isNotMaster = (reply: Buffer): boolean =>
  reply[0] === 83 && startsWith(reply, "SERVER_ERROR not a master");

export class ProxyCommands implements CommandHandler {
  private readonly transport: MemcacheTransport;
  private readonly mapWaiters = new Set<() => void>();
  private readonly startedAt = Date.now();
  /** What the proxy does when a node fails (the HTTP front reports nodes the same way). */
  readonly hooks: FailureHooks<Buffer>;
  /** What went wrong, for /metrics: requests that failed by command, retries, unreachable nodes. */
  readonly events = {
    failed: new Map<string, number>(),
    readRetries: 0,
    writeRetries: 0,
    unreachable: new Map<string, number>(),
  };
  /** Newer maps as the index pushes them (the HTTP front waits on them too). */
  readonly maps: MapFeed;
  /** The run the last request started or joined, if the next one may join it. */
  private run: Run | undefined;

  constructor(
    private readonly router: Router,
    private readonly member: ClusterMember,
    private readonly options: ProxyOptions,
    private readonly counters: ServerCounters,
    private readonly log: Logger,
    /** Tells the index a node did not answer, so it checks that node now. */
    suspect: (node: NodeEntry) => void,
  ) {
    this.transport = new MemcacheTransport(
      options.concurrency,
      options.requestTimeoutMs,
      options.credentials,
    );
    this.hooks = {
      unreachable: (node) => {
        const name = nodeKey(node.host, node.port);
        this.events.unreachable.set(name, (this.events.unreachable.get(name) ?? 0) + 1);
        suspect(node);
      },
      refused: (node, reply) =>
        log.warn("replica refused a read", {
          node: nodeKey(node.host, node.port),
          reply: reply.toString("latin1").trim(),
        }),
    };
    this.maps = {
      get version() {
        return member.version;
      },
      newerThan: (version, deadline) => this.mapAfter(version, deadline),
    };
    member.onMap((nodes) => {
      router.update(nodes);
      this.transport.retain(nodes.filter((n) => n.role !== "proxy"));
      for (const w of [...this.mapWaiters]) w();
    });
  }

  execute(
    req: Request,
    out: ReplyBuffer,
    _stream?: () => Promise<void>,
    packet = 0,
    conn?: ConnectionState,
  ): Execution | Later | typeof FOLLOWS {
    const touch = conn === undefined ? NONE : touchOf(req);
    if (touch === NONE) return this.dispatch(req, out, packet);
    const keys = keysOf(req);
    let order = conn?.handler as ConnectionOrder | undefined;
    if (order === undefined) {
      order = new ConnectionOrder();
      (conn as ConnectionState).handler = order;
    }
    if (!order.mustWait(touch, keys)) return this.track(order, touch, keys, this.dispatch(req, out, packet));
    const held = order;
    return held.hold(() => {
      // Sent on its own: it neither joins a run nor may be joined.
      const saved = this.run;
      this.run = undefined;
      const r = this.track(held, touch, keys, this.dispatch(req, out, 0));
      this.run = saved;
      return settled(r);
    });
  }

  /** Counts a request in flight on its connection until it is answered. */
  private track(
    order: ConnectionOrder,
    touch: Touch,
    keys: Keys,
    r: Execution | Later | typeof FOLLOWS,
  ): Execution | Later | typeof FOLLOWS {
    if (typeof r === "boolean") return r;
    const slot = order.begin(touch, keys);
    if (r === FOLLOWS) (this.run as Run).also(order, slot);
    else if (r instanceof Later) r.also(order, slot);
    else {
      const end = (): void => order.end(slot);
      r.then(end, end);
    }
    return r;
  }

  private dispatch(req: Request, out: ReplyBuffer, packet: number): Execution | Later | typeof FOLLOWS {
    // A run of requests for one node lasts while requests that can join it come one after another.
    const run = this.run;
    this.run = undefined;
    // Commands are counted as memcached counts them (hits and misses: each node's stats).
    const c = this.cmds;
    switch (req.op) {
      case "get":
      case "gets":
        c.get += req.keys.length;
        if (req.keys.length === 1) return this.readRun(run, req.op, req.keys[0] as string, out, packet);
        return this.reply(req.op, this.read(req.op, req.keys, encodeRequest(req)), out);
      case "gat":
      case "gats":
        c.get += req.keys.length;
        c.touch += req.keys.length;
        return this.reply(req.op, this.touchRead(req), out);
      case "set":
      case "add":
      case "replace":
      case "append":
      case "prepend":
      case "cas":
        c.set++;
        return this.writeRun(run, req.op, req.key, forwarded(req), out, req.noreply, packet);
      case "touch":
        c.touch++;
        return this.writeRun(run, req.op, req.key, forwarded(req), out, req.noreply, packet);
      case "incr":
      case "decr":
      case "delete":
        return this.writeRun(run, req.op, req.key, forwarded(req), out, req.noreply, packet);
      case "flush_all":
        c.flush++;
        return this.reply(req.op, this.flushAll(encodeRequest(req)), out, req.noreply);
      case "stats":
        writeStats(req.args, this.statsSource, out);
        return true;
      case "version":
        out.line(`VERSION ${PROTOCOL_VERSION}`);
        return true;
      case "verbosity":
        if (!req.noreply) out.line("OK");
        return true;
      case "ping":
        out.line("OK");
        return true;
      case "node_sync":
        out.line(this.member.sync(req.version, req.lines));
        return true;
      case "dump":
        out.line("SERVER_ERROR dump is served by storage nodes, not by a proxy");
        return true;
      case "mg":
      case "ms":
      case "md":
      case "ma":
      case "me":
        if (req.op === "mg") c.get++;
        else if (req.op === "ms") c.set++;
        // Quiet requests may have no reply: each goes alone, closed by an mn.
        if (req.flags.quiet) return this.reply(req.op, this.quietMeta(req), out);
        return this.writeRun(run, req.op, req.key, encodeRequest(req), out, false, packet, "meta");
      case "quit":
        return false;
      case "reply":
        out.line(req.line);
        return true;
    }
  }

  /**
   * Meta requests go to the key's master, which alone keeps stale marks and win tokens, in runs as
   * writes do. In quiet mode a reply may not come at all, so an `mn` follows the request and its
   * `MN` closes the reply (and is not passed on): the client's own `mn` is answered here, in turn.
   */
  private async quietMeta(req: MetaRequest): Promise<Buffer> {
    const reply = await this.write(req.key, Buffer.concat([encodeRequest(req), MN]), "quiet");
    return reply.subarray(0, reply.length - MN_REPLY.length);
  }

  /** A write as the HTTP API asks it: the raw reply line from the key's master. */
  forwardWrite(key: string, request: Buffer): Promise<Buffer> {
    return this.write(key, request, "line");
  }

  /**
   * The hot path. A one-key read goes to a replica with a callback, no promise; the reads that
   * follow it in the packet, for the same partition, join it: one request to the node, one reply
   * to copy, one slot (FOLLOWS). Only when a replica fails do the reads take the general path,
   * which tries the others. The request, `<op> <key>`, is written straight into what goes to the
   * node: no Buffer is made for it, and the client's bytes are not kept.
   */
  private readRun(
    prev: Run | undefined,
    op: "get" | "gets",
    key: string,
    out: ReplyBuffer,
    packet: number,
  ): Execution | Later | typeof FOLLOWS {
    const partition = this.router.partitionOf(key);
    if (prev !== undefined && joins(prev, packet, op, partition, false)) {
      const more = this.transport.add(prev);
      if (more !== undefined) {
        more.words(op, key);
        prev.join(key, undefined);
        this.run = prev;
        return FOLLOWS;
      }
    }
    const node = this.router.readerIn(partition);
    if (node === undefined)
      return this.reply(op, this.readFrom(key, encodeRequest({ op, keys: [key] })), out);
    const run = new Run(this, node, out, packet, op, partition, false, false, "values", key, undefined, 0);
    this.transport.send(node, run).words(op, key);
    this.run = run;
    return run;
  }

  /** A run's replica failed or refused: each of its reads tries the partition's other replicas. */
  retryReads(run: Run, reply: Buffer | TransportError, start: number, end: number): void {
    const node = run.node;
    if (reply instanceof TransportError) this.hooks.unreachable(node, reply);
    else this.hooks.refused?.(node, reply.subarray(start, end));
    const n = run.requests;
    this.events.readRetries += n;
    const tried = nodeKey(node.host, node.port);
    const retried: Promise<Buffer>[] = [];
    for (let i = 0; i < n; i++) retried.push(this.readFrom(run.keyAt(i), run.bytesAt(i), new Set([tried])));
    this.replyAll(run.op, retried, run.out).then((keep) => run.done(keep, n));
  }

  /**
   * The hot path of writes: straight to the master with a callback; the writes that follow in the
   * packet, for the same partition, join it. A write its master did not take (unreachable, or no
   * longer master) is retried, in order, once the map names a new master.
   */
  private writeRun(
    prev: Run | undefined,
    op: string,
    key: string,
    bytes: Buffer,
    out: ReplyBuffer,
    noreply: boolean,
    packet: number,
    shape: "line" | "meta" = "line",
  ): Execution | Later | typeof FOLLOWS {
    const partition = this.router.partitionOf(key);
    if (prev !== undefined && joins(prev, packet, op, partition, true) && prev.noreply === noreply) {
      const more = this.transport.add(prev);
      if (more !== undefined) {
        more.bytes(bytes);
        prev.join(key, bytes);
        this.run = prev;
        return FOLLOWS;
      }
    }
    const master = this.router.writerIn(partition);
    if (master === undefined) return this.reply(op, this.write(key, bytes, shape), out, noreply);
    const run = new Run(
      this,
      master,
      out,
      packet,
      op,
      partition,
      true,
      noreply,
      shape,
      key,
      bytes,
      this.member.version,
    );
    this.transport.send(master, run).bytes(bytes);
    this.run = run;
    return run;
  }

  /**
   * A run's master was unreachable, or some of its writes found it no longer master: those are
   * retried, in order, once the map names a new master; the others keep the reply they had.
   */
  retryWrites(run: Run, reply: Buffer | TransportError, start: number, end: number): void {
    if (reply instanceof TransportError) this.hooks.unreachable(run.node, reply);
    const shape = run.shape as "line" | "meta";
    const lines = reply instanceof TransportError ? undefined : splitReplies(reply, start, end, shape);
    // The wait for a new master is bounded from the moment the writes found their master gone.
    const deadline = Date.now() + this.options.writeWaitMs;
    let previous: Promise<unknown> = Promise.resolve();
    const n = run.requests;
    const results: Promise<Buffer>[] = [];
    for (let i = 0; i < n; i++) {
      const line = lines?.[i];
      if (line !== undefined && !isNotMaster(line)) {
        results.push(Promise.resolve(line));
        continue;
      }
      this.events.writeRetries++;
      const key = run.keyAt(i);
      const bytes = run.bytesAt(i);
      // One after another: a later write of a key must not land before an earlier one.
      const retried = previous.then(() => this.writeNow(key, bytes, shape, deadline, run.seen));
      previous = retried.catch(() => undefined);
      results.push(retried);
    }
    this.replyAll(run.op, results, run.out, run.noreply).then((keep) => run.done(keep, n));
  }

  close(): void {
    this.transport.close();
    for (const w of [...this.mapWaiters]) w();
  }

  private reply(
    op: string,
    result: Promise<Buffer | Buffer[]>,
    out: ReplyBuffer,
    noreply = false,
  ): Promise<boolean> {
    return this.replyAll(op, [result], out, noreply);
  }

  /** Writes each request's reply, in order, once all are known; a failed one is a SERVER_ERROR line. */
  private async replyAll(
    op: string,
    results: Promise<Buffer | Buffer[]>[],
    out: ReplyBuffer,
    noreply = false,
  ): Promise<boolean> {
    for (const r of await Promise.allSettled(results)) {
      if (r.status === "fulfilled") {
        if (noreply) continue;
        if (Array.isArray(r.value)) for (const b of r.value) out.bytes(b);
        else out.bytes(r.value);
        continue;
      }
      const err: unknown = r.reason;
      this.events.failed.set(op, (this.events.failed.get(op) ?? 0) + 1);
      if (!noreply) out.line(`SERVER_ERROR ${err instanceof ProxyFailure ? err.message : "proxy error"}`);
      if (!(err instanceof ProxyFailure)) this.log.error("proxy request failed", { err });
    }
    return true;
  }

  /** get/gets: one request per partition involved; the replies are put back in request order. */
  private async read(op: "get" | "gets", keys: string[], whole: Buffer): Promise<Buffer | Buffer[]> {
    const groups = new Map<number, string[]>();
    for (const key of keys) {
      const p = this.router.partitionOf(key);
      const g = groups.get(p);
      if (g === undefined) groups.set(p, [key]);
      else g.push(key);
    }
    if (groups.size <= 1) return this.readFrom(keys[0] as string, whole);
    const replies = await Promise.all(
      [...groups.values()].map((g) => this.readFrom(g[0] as string, encodeRequest({ op, keys: g }))),
    );
    const blocks = new Map<string, Buffer>();
    for (const r of replies) for (const v of valueBlocks(r)) blocks.set(v.key, v.block);
    const out: Buffer[] = [];
    for (const key of keys) {
      const b = blocks.get(key);
      if (b !== undefined) out.push(b);
    }
    out.push(END);
    return out;
  }

  private readFrom(key: string, bytes: Buffer, tried?: Set<string>): Promise<Buffer> {
    const req = { bytes, shape: "values" as const };
    return readFromReplicas(this.router, this.transport, key, req, isServerError, this.hooks, tried);
  }

  /** gat/gats change expiry: each key goes to its master; the VALUE blocks come back in order. */
  private async touchRead(req: Extract<Request, { op: "gat" | "gats" }>): Promise<Buffer[]> {
    const replies = await Promise.all(
      req.keys.map((key) =>
        this.write(key, encodeRequest({ op: req.op, exptime: req.exptime, keys: [key] }), "values"),
      ),
    );
    const out: Buffer[] = [];
    for (const r of replies) for (const v of valueBlocks(r)) out.push(v.block);
    out.push(END);
    return out;
  }

  private write(key: string, bytes: Buffer, shape: ReplyShape): Promise<Buffer> {
    return this.writeNow(key, bytes, shape, Date.now() + this.options.writeWaitMs);
  }

  private writeNow(
    key: string,
    bytes: Buffer,
    shape: ReplyShape,
    deadline: number,
    failedWith?: number,
  ): Promise<Buffer> {
    const req = { bytes, shape };
    return writeToMaster(
      this.router,
      this.transport,
      this.maps,
      key,
      req,
      isNotMaster,
      this.hooks,
      deadline,
      failedWith,
    );
  }

  private async flushAll(bytes: Buffer): Promise<Buffer> {
    const targets: NodeEntry[] = [];
    for (let p = 0; p < this.router.count; p++) {
      for (const r of this.router.partition(p)?.readers ?? []) targets.push(r.node);
    }
    const replies = await Promise.all(
      targets.map((n) => this.transport.request(n, { bytes, shape: "line" }).catch(() => FAILED)),
    );
    if (replies.every((r) => r.toString("latin1") === "OK\r\n")) return OK;
    throw new ProxyFailure("flush_all did not reach every node");
  }

  /** Resolves true when a map newer than `version` arrived, false at the deadline. */
  private mapAfter(version: number, deadline: number): Promise<boolean> {
    if (this.member.version > version) return Promise.resolve(true);
    const left = deadline - Date.now();
    if (left <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.mapWaiters.delete(check);
        resolve(ok);
      };
      const check = (): void => {
        if (this.member.version > version) done(true);
      };
      // Poll gently too: a node that answers again (it was only slow) needs no new map.
      const timer = setTimeout(() => done(Date.now() < deadline), Math.min(left, 250));
      this.mapWaiters.add(check);
    });
  }

  /** Commands the proxy was sent, as memcached counts them. */
  private readonly cmds = { get: 0, set: 0, touch: 0, flush: 0 };

  /** What `stats` reports of the proxy. */
  private readonly statsSource: StatsSource = {
    server: () => this.counters,
    general: () => this.stats(),
    settings: () => this.settings(),
    reset: () => {
      const c = this.cmds;
      c.get = c.set = c.touch = c.flush = 0;
    },
    nodes: () => this.member.statsNodes(),
    replication: () => [],
  };

  private settings(): StatPairs {
    return [
      ["maxconns", this.options.maxConnections],
      ["proxy_concurrency", this.options.concurrency],
      ["proxy_request_timeout", this.options.requestTimeoutMs],
      ["proxy_write_wait", this.options.writeWaitMs],
      ["cas_enabled", "yes"],
    ];
  }

  private stats(): StatPairs {
    const o = this.options;
    const c = this.cmds;
    return [
      ...processStats(this.startedAt, o.version, o.maxConnections, this.counters),
      ["cmd_get", c.get],
      ["cmd_set", c.set],
      ["cmd_flush", c.flush],
      ["cmd_touch", c.touch],
      ...frontStats(this.counters),
      ["node_map_version", this.member.version],
    ];
  }
}

const END = Buffer.from("END\r\n");
const MN = Buffer.from("mn\r\n");
const MN_REPLY = Buffer.from("MN\r\n");
const OK = Buffer.from("OK\r\n");
const FAILED = Buffer.from("SERVER_ERROR unreachable\r\n");

/** The bytes to send a node: as the client sent them when that was plain enough, else encoded. */
function forwarded(req: Request): Buffer {
  return "raw" in req && req.raw !== undefined ? req.raw : encodeRequest(req);
}

/**
 * Requests of one packet sent to one node as one request, answered as one reply; done when that
 * reply (every request's in it) is written. One object per run: it is the run's Later and what the
 * transport hands the reply to.
 */
class Run extends Later implements Sent {
  /**
   * What the transport keeps of the run's request to the node (which later requests may join until
   * it is written): how many requests it holds (the run's size: the transport counts each that
   * joins), its deadline, the connection it went out on.
   */
  requests = 1;
  deadline = 0;
  conn: BackendConnection | undefined = undefined;
  /** The keys of the requests that joined the first, and (writes) their bytes. */
  private moreKeys: string[] | undefined = undefined;
  private moreBytes: Buffer[] | undefined = undefined;

  constructor(
    private readonly commands: ProxyCommands,
    readonly node: NodeEntry,
    out: ReplyBuffer,
    readonly packet: number,
    readonly op: string,
    readonly partition: number,
    readonly write: boolean,
    readonly noreply: boolean,
    readonly shape: ReplyShape,
    private readonly key: string,
    /** A write's bytes, kept for a retry; a read keeps none (its request is `<op> <key>`). */
    private readonly bytes: Buffer | undefined,
    /** Writes: the map version they were sent under (a retry waits for a newer one). */
    readonly seen: number,
  ) {
    super(out);
  }

  keyAt(i: number): string {
    return i === 0 ? this.key : ((this.moreKeys as string[])[i - 1] as string);
  }

  bytesAt(i: number): Buffer {
    // A read run's requests are one-key gets (readRun), written again only for a retry.
    if (!this.write) return encodeRequest({ op: this.op as "get" | "gets", keys: [this.keyAt(i)] });
    return i === 0 ? (this.bytes as Buffer) : ((this.moreBytes as Buffer[])[i - 1] as Buffer);
  }

  join(key: string, bytes: Buffer | undefined): void {
    if (this.moreKeys === undefined) this.moreKeys = [key];
    else this.moreKeys.push(key);
    if (bytes === undefined) return;
    if (this.moreBytes === undefined) this.moreBytes = [bytes];
    else this.moreBytes.push(bytes);
  }

  replied(reply: Buffer | TransportError, start: number, end: number, serverErrors: number): boolean {
    if (!(reply instanceof TransportError) && serverErrors === 0) {
      const kept = !this.noreply && this.out.range(reply, start, end);
      this.done(true, this.requests);
      return kept;
    }
    // A retry keeps views of the replies that need none.
    if (this.write) this.commands.retryWrites(this, reply, start, end);
    else this.commands.retryReads(this, reply, start, end);
    return true;
  }
}

/** Longest run: bounds one reply held in memory (and one slot's size). */
const MAX_RUN = 256;

/** Can a request of `op` for `partition`, next in `packet`, join `run`? */
const joins = (run: Run, packet: number, op: string, partition: number, write: boolean): boolean =>
  run.packet === packet &&
  packet !== 0 &&
  run.op === op &&
  run.partition === partition &&
  run.write === write &&
  run.requests < MAX_RUN;

/** The replies of a run, as views: one line each, or (meta) a line and a VA's data block. */
function splitReplies(reply: Buffer, start: number, end: number, shape: "line" | "meta"): Buffer[] {
  const replies: Buffer[] = [];
  for (let at = start; at < end; ) {
    const nl = reply.indexOf(10, at);
    const next =
      nl < 0 || nl >= end ? end : shape === "meta" ? Math.min(end, metaReplyEnd(reply, at, nl)) : nl + 1;
    replies.push(reply.subarray(at, next));
    at = next;
  }
  return replies;
}
