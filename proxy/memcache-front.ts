/**
 * The proxy's memcached front: each request goes to the node that owns its key. Reads try another
 * replica at once when one fails; writes to an unreachable master wait (bounded) for the map that
 * names the new master. Replies are forwarded as the nodes wrote them.
 */
import type { Logger } from "../common/log.js";
import type { ClusterMember } from "../protocol/cluster-member.js";
import { encodeRequest } from "../protocol/memcache/encode.js";
import type { ReplyBuffer } from "../protocol/memcache/reply.js";
import type { Request } from "../protocol/memcache/request.js";
import {
  type CommandHandler,
  type Execution,
  Later,
  type ServerCounters,
} from "../protocol/memcache/server.js";
import { type NodeEntry, nodeKey } from "../protocol/node-map.js";
import {
  type FailureHooks,
  type MapFeed,
  ProxyFailure,
  readFromReplicas,
  writeToMaster,
} from "./failover.js";
import { PendingWrites } from "./pending-writes.js";
import type { Router } from "./router.js";
import { MemcacheTransport, type ReplyShape } from "./transports/memcache-transport.js";
import { TransportError } from "./transports/transport.js";

export interface ProxyOptions {
  concurrency: number;
  requestTimeoutMs: number;
  writeWaitMs: number;
  version: string;
}

const startsWith = (reply: Buffer, start: number, end: number, text: string): boolean =>
  end - start >= text.length && reply.latin1Slice(start, start + text.length) === text;
const isServerError = (reply: Buffer, start = 0, end = reply.length): boolean =>
  reply[start] === 83 && startsWith(reply, start, end, "SERVER_ERROR");
/** A node that is no longer master says so: the map it is in is newer than ours. */
const isNotMaster = (reply: Buffer, start = 0, end = reply.length): boolean =>
  reply[start] === 83 && startsWith(reply, start, end, "SERVER_ERROR not a master");

export class ProxyCommands implements CommandHandler {
  private readonly transport: MemcacheTransport;
  private readonly mapWaiters = new Set<() => void>();
  private readonly startedAt = Date.now();
  private readonly hooks: FailureHooks<Buffer>;
  /** What went wrong, for /metrics: requests that failed by command, retries, unreachable nodes. */
  readonly events = {
    failed: new Map<string, number>(),
    readRetries: 0,
    writeRetries: 0,
    unreachable: new Map<string, number>(),
  };
  private readonly maps: MapFeed;

  constructor(
    private readonly router: Router,
    private readonly member: ClusterMember,
    private readonly options: ProxyOptions,
    private readonly counters: ServerCounters,
    private readonly log: Logger,
    /** Tells the index a node did not answer, so it checks that node now. */
    suspect: (node: NodeEntry) => void,
  ) {
    this.transport = new MemcacheTransport(options.concurrency, options.requestTimeoutMs);
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

  execute(req: Request, out: ReplyBuffer): Execution | Later {
    switch (req.op) {
      case "get":
      case "gets":
        if (req.keys.length === 1 && !this.writing.has(req.keys[0] as string))
          return this.readOne(req.op, req.keys[0] as string, forwarded(req), out);
        return this.reply(req.op, this.read(req.keys, encodeRequest(req)), out);
      case "gat":
      case "gats":
        return this.reply(req.op, this.touchRead(req), out);
      case "set":
      case "add":
      case "replace":
      case "append":
      case "prepend":
      case "cas":
      case "incr":
      case "decr":
      case "delete":
      case "touch":
        return this.writeOne(req.op, req.key, forwarded(req), out, req.noreply);
      case "flush_all":
        return this.reply(req.op, this.flushAll(encodeRequest(req)), out, req.noreply);
      case "stats":
        if (req.args.length === 0) {
          for (const [k, v] of this.stats()) out.line(`STAT ${k} ${v}`);
        } else if (req.args[0] === "nodes") {
          for (const line of this.member.statsNodes()) out.line(line);
        } else if (!["items", "slabs", "sizes"].includes(req.args[0] as string)) {
          out.line("ERROR");
          return true;
        }
        out.line("END");
        return true;
      case "version":
        out.line(`VERSION ${this.options.version}`);
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
      case "quit":
        return false;
      case "reply":
        out.line(req.line);
        return true;
    }
  }

  /** A read as the HTTP API asks it: the raw get/gets reply, from whichever replica answers. */
  forwardRead(keys: string[], request: Buffer): Promise<Buffer | Buffer[]> {
    return this.read(keys, request);
  }

  /** A write as the HTTP API asks it: the raw reply line from the key's master. */
  forwardWrite(key: string, request: Buffer): Promise<Buffer> {
    return this.write(key, request, "line");
  }

  /**
   * The hot path of a one-key read: one callback, no promise. Only a replica that fails sends the
   * read down the general path, which tries the others.
   */
  private readOne(op: string, key: string, bytes: Buffer, out: ReplyBuffer): Execution | Later {
    const node = this.router.reader(key);
    if (node === undefined) return this.reply(op, this.readFrom(key, bytes), out);
    const later = new Later();
    this.transport.send(node, bytes, "values", (reply, start, end) => {
      if (reply instanceof TransportError) this.hooks.unreachable(node, reply);
      else if (isServerError(reply, start, end)) this.hooks.refused?.(node, reply.subarray(start, end));
      else {
        out.range(reply, start, end);
        later.done();
        return;
      }
      const tried = new Set([nodeKey(node.host, node.port)]);
      this.events.readRetries++;
      this.reply(op, this.readFrom(key, bytes, tried), out).then((keep) => later.done(keep));
    });
    return later;
  }

  /**
   * The hot path of a one-key write: straight to the master with a callback. A master that cannot
   * be reached or is no longer one sends the write down the general path, which waits for the map.
   */
  private writeOne(
    op: string,
    key: string,
    bytes: Buffer,
    out: ReplyBuffer,
    noreply: boolean,
  ): Execution | Later {
    const master = this.router.writer(key);
    if (master === undefined) return this.reply(op, this.write(key, bytes, "line"), out, noreply);
    const seen = this.member.version;
    const later = new Later();
    this.writing.begin(key);
    this.transport.send(master, bytes, "line", (reply, start, end) => {
      if (!(reply instanceof TransportError) && !isNotMaster(reply, start, end)) {
        this.writing.end(key);
        if (!noreply) out.range(reply, start, end);
        later.done();
        return;
      }
      if (reply instanceof TransportError) this.hooks.unreachable(master, reply);
      // The wait for a new master is bounded from the moment the write found its master gone.
      const deadline = Date.now() + this.options.writeWaitMs;
      const retried = this.writeNow(key, bytes, "line", deadline, seen);
      void retried.catch(() => undefined).then(() => this.writing.end(key));
      this.events.writeRetries++;
      this.reply(op, retried, out, noreply).then((keep) => later.done(keep));
    });
    return later;
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
    return result.then(
      (bytes) => {
        if (noreply) return true;
        if (Array.isArray(bytes)) for (const b of bytes) out.bytes(b);
        else out.bytes(bytes);
        return true;
      },
      (err: unknown) => {
        this.events.failed.set(op, (this.events.failed.get(op) ?? 0) + 1);
        if (!noreply) out.line(`SERVER_ERROR ${err instanceof ProxyFailure ? err.message : "proxy error"}`);
        if (!(err instanceof ProxyFailure)) this.log.error("proxy request failed", { err });
        return true;
      },
    );
  }

  /** get/gets: one request per partition involved; the replies are put back in request order. */
  private async read(keys: string[], whole: Buffer): Promise<Buffer | Buffer[]> {
    if (this.writing.size > 0) await this.writing.settled(keys);
    const groups = new Map<number, string[]>();
    for (const key of keys) {
      const p = this.router.partitionOf(key);
      const g = groups.get(p);
      if (g === undefined) groups.set(p, [key]);
      else g.push(key);
    }
    if (groups.size <= 1) return this.readFrom(keys[0] as string, whole);
    const command = whole.toString("latin1", 0, whole.indexOf(32));
    const replies = await Promise.all(
      [...groups.values()].map((g) =>
        this.readFrom(g[0] as string, Buffer.from(`${command} ${g.join(" ")}\r\n`, "latin1")),
      ),
    );
    const blocks = new Map<string, Buffer>();
    for (const r of replies) for (const [key, block] of valueBlocks(r)) blocks.set(key, block);
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
        this.write(key, Buffer.from(`${req.op} ${req.exptime} ${key}\r\n`, "latin1"), "values"),
      ),
    );
    const out: Buffer[] = [];
    for (const r of replies) for (const [, block] of valueBlocks(r)) out.push(block);
    out.push(END);
    return out;
  }

  private readonly writing = new PendingWrites();

  private write(key: string, bytes: Buffer, shape: ReplyShape): Promise<Buffer> {
    this.writing.begin(key);
    const done = this.writeNow(key, bytes, shape, Date.now() + this.options.writeWaitMs);
    void done.catch(() => undefined).then(() => this.writing.end(key));
    return done;
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

  private stats(): [string, string | number][] {
    const now = Date.now();
    const c = this.counters;
    return [
      ["pid", process.pid],
      ["uptime", Math.floor((now - this.startedAt) / 1000)],
      ["time", Math.floor(now / 1000)],
      ["version", this.options.version],
      ["curr_connections", c.connections.current],
      ["total_connections", c.connections.total],
      ["rejected_connections", c.connections.rejected],
      ["bytes_read", c.traffic.bytesRead],
      ["bytes_written", c.traffic.bytesWritten],
      ["node_map_version", this.member.version],
    ];
  }
}

const END = Buffer.from("END\r\n");
const OK = Buffer.from("OK\r\n");
const FAILED = Buffer.from("SERVER_ERROR unreachable\r\n");

/** The VALUE blocks of a get reply, by key. */
function valueBlocks(reply: Buffer): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  let pos = 0;
  while (pos < reply.length) {
    const nl = reply.indexOf(10, pos);
    if (nl < 0) break;
    const line = reply.toString("latin1", pos, nl).trimEnd();
    if (!line.startsWith("VALUE ")) break;
    const fields = line.split(" ");
    const end = nl + 1 + Number(fields[3]) + 2;
    out.push([fields[1] as string, reply.subarray(pos, end)]);
    pos = end;
  }
  return out;
}

/** The bytes to send a node: as the client sent them when that was plain enough, else encoded. */
function forwarded(req: Request): Buffer {
  return "raw" in req && req.raw !== undefined ? req.raw : encodeRequest(req);
}
