/**
 * The memcached text protocol over TCP, for storage nodes and the proxy alike. Each packet is parsed completely, every reply goes into one
 * buffer, and the buffer leaves in one write: pipelined clients cost one syscall per packet.
 */
import { type AddressInfo, createServer, type Server, Socket } from "node:net";
import { now as clock } from "../../common/clock.js";
import type { Logger } from "../../common/log.js";
import type { LatencyRecorder } from "../../common/metrics.js";
import type { ClusterSecret } from "../cluster-auth.js";
import { type ParserLimits, RequestParser } from "./parser.js";
import { ReplyBuffer } from "./reply.js";
import type { Request } from "./request.js";
import { SocketWriter } from "./socket-writer.js";

/** true: keep the connection; false: close it after this reply; a promise: the same, later. */
export type Execution = boolean | Promise<boolean>;

/** Who is told that a Later is done: a method, so that no closure is made per reply. */
export interface Settle {
  /** `count`: how many requests' replies were written (the Later's and those that FOLLOW it). */
  settle(keep: boolean, count: number): void;
}

/** Keeps numbered slots of requests in flight (the proxy's per-connection order). */
export interface SlotKeeper {
  end(slot: number): void;
}

/** What a held-back reply tells when it is ready: its connection. */
interface SlotOwner {
  settled(): void;
}

/**
 * A reply held back until the replies before it are sent: its buffer, whether it is ready, and
 * (once it is) whether to keep the connection and how many requests it answers.
 */
export class Slot implements Settle {
  ready = false;
  keep = true;
  /** Requests it answers (itself and those that FOLLOW it). */
  count = 1;
  /** A timed reply: its command, timed from its packet's arrival to its release. */
  timed: string | undefined = undefined;
  started = 0;
  /** The connection waiting for it, told when it is ready. */
  owner: SlotOwner | undefined = undefined;

  constructor(readonly out: ReplyBuffer) {}

  /** A reply already answered, held behind the ones before it. */
  static answered(out: ReplyBuffer, keep: boolean): Slot {
    const slot = new Slot(out);
    slot.ready = true;
    slot.keep = keep;
    return slot;
  }

  settle(keep: boolean, count: number): void {
    this.count = count;
    this.keep = keep;
    this.ready = true;
    this.owner?.settled();
  }
}

/**
 * A reply finished by a call instead of a promise: no microtask hops and no closures, for the
 * proxy, whose every reply waits for a node. It writes into the buffer its request was given, and
 * is its own slot in the connection's line: no second object per reply.
 */
export class Later extends Slot {
  /** Told as well, when something other than a connection waits (a held request's promise). */
  private listener: Settle | undefined;
  /**
   * Slots ended when it is done, after the listener: usually one, kept without an array; those of
   * requests that FOLLOW it in `more`.
   */
  private keeper: SlotKeeper | undefined;
  private slot = 0;
  private more: { keeper: SlotKeeper; slot: number }[] | undefined;

  done(keep = true, count = 1): void {
    this.settle(keep, count);
    this.listener?.settle(keep, count);
    const keeper = this.keeper;
    if (keeper === undefined) return;
    this.keeper = undefined;
    keeper.end(this.slot);
    const more = this.more;
    this.more = undefined;
    if (more !== undefined) for (const m of more) m.keeper.end(m.slot);
  }

  /** Ends `slot` of `keeper` once done (at once if it already is). */
  also(keeper: SlotKeeper, slot: number): void {
    if (this.ready) keeper.end(slot);
    else if (this.keeper === undefined) {
      this.keeper = keeper;
      this.slot = slot;
    } else if (this.more === undefined) this.more = [{ keeper, slot }];
    else this.more.push({ keeper, slot });
  }

  listen(listener: Settle): void {
    if (this.ready) listener.settle(this.keep, this.count);
    else this.listener = listener;
  }
}

/**
 * A request whose reply the request before it (in the same packet) writes, with its own: the proxy
 * sends runs of requests for one node as one. No slot is held for it.
 */
export const FOLLOWS = Symbol("follows");

/** A request's outcome as a promise (one that does not FOLLOW another: it has an outcome of its own). */
export function settled(r: Execution | Later | typeof FOLLOWS): Promise<boolean> {
  if (typeof r === "boolean") return Promise.resolve(r);
  if (r instanceof Later) return new Promise((resolve) => r.listen({ settle: (keep) => resolve(keep) }));
  if (r === FOLLOWS) throw new Error("a held request cannot follow a run");
  return r;
}

/** One connection's slot for its handler's own state (the proxy keeps the connection's order there). */
export interface ConnectionState {
  handler?: unknown;
  /** The connection proved it is a cluster peer (cluster auth). */
  readonly peer: boolean;
}

class PeerAware implements ConnectionState {
  handler: unknown;
  constructor(private readonly parser: RequestParser) {}
  get peer(): boolean {
    return this.parser.trusted;
  }
}

/** What answers requests: a storage node's commands, or the proxy's. */
export interface CommandHandler {
  /**
   * Writes the reply of `req` to `out` (now, or by the time the promise settles or Later is done;
   * a Later is made with `out` as its buffer).
   * `packet` numbers the packets read, across connections: requests with the same number came
   * one after another from one connection.
   */
  execute(
    req: Request,
    out: ReplyBuffer,
    stream?: () => Promise<void>,
    packet?: number,
    conn?: ConnectionState,
  ): Execution | Later | typeof FOLLOWS;
}

/** Connection and traffic counters the server keeps for `stats`, and request latencies. */
export interface ServerCounters {
  /** `idleKicks`: connections closed for staying idle past net-read-timeout. */
  readonly connections: { current: number; total: number; rejected: number; idleKicks: number };
  /** `storeTooLarge`: values refused for being larger than item-size-max. */
  readonly traffic: { bytesRead: number; bytesWritten: number; storeTooLarge: number };
  readonly latency?: LatencyRecorder;
  /** Filled in by the server that counts into these: what `stats conns` and `stats threads` list. */
  listing?: () => ConnectionListing;
}

export function newServerCounters(latency?: LatencyRecorder): ServerCounters {
  return {
    connections: { current: 0, total: 0, rejected: 0, idleKicks: 0 },
    traffic: { bytesRead: 0, bytesWritten: 0, storeTooLarge: 0 },
    latency,
  };
}

/** One client connection as `stats conns` (memcached) and `stats threads` (Flare) show it. */
export interface ConnectionView {
  readonly id: number;
  /** host:port of the client. */
  readonly peer: string;
  readonly openedAt: number;
  /** performance.now() when it last sent anything. */
  readonly lastCommandAt: number;
  /** The last command it sent ("" before the first). */
  readonly lastOp: string;
  /** Replies it is still owed. */
  readonly owed: number;
}

export interface ConnectionListing {
  /** host:port the server listens on. */
  listen: string;
  connections: ConnectionView[];
}

export interface MemcacheServerOptions {
  host: string;
  port: number;
  backlog: number;
  maxConnections: number;
  /** Idle seconds before a connection is closed (a client stalled mid-request included). */
  readTimeoutSeconds: number;
  limits: ParserLimits;
  /** The cluster's secret: connections that prove it may send cluster traffic. */
  secret: ClusterSecret;
  /** Keep plain sets' bytes as they arrived (a proxy forwards them). */
  keepRaw?: boolean;
}

export class MemcacheServer {
  private readonly server: Server;
  private readonly open = new Set<Connection>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: MemcacheServerOptions,
    private readonly commands: CommandHandler,
    private readonly info: ServerCounters,
    private readonly log: Logger,
  ) {
    info.listing = () => {
      const address = this.server.address() as AddressInfo | null;
      return {
        listen: address === null ? "" : `${address.address}:${address.port}`,
        connections: [...this.open],
      };
    };
    // Accepted paused: each connection is taken over by a socket that reads into its own buffer
    // (see readInto).
    this.server = createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  /**
   * Closes connections idle (or stalled mid-request) past net-read-timeout. One sweep a second for
   * all of them, instead of a socket timer that every read and write would re-arm.
   */
  private kickIdle(): void {
    const now = performance.now();
    const limit = this.options.readTimeoutSeconds * 1000;
    for (const c of this.open) {
      if (now - c.lastCommandAt > limit) {
        this.info.connections.idleKicks++;
        c.close();
      }
    }
  }

  listen(): Promise<AddressInfo> {
    const every = Math.min(1000, this.options.readTimeoutSeconds * 250);
    this.sweeper = setInterval(() => this.kickIdle(), every);
    this.sweeper.unref();
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(
        { host: this.options.host, port: this.options.port, backlog: this.options.backlog },
        () => {
          this.server.off("error", reject);
          resolve(this.server.address() as AddressInfo);
        },
      );
    });
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const connection of this.open) connection.close();
    });
  }

  private accept(socket: Socket): void {
    const conns = this.info.connections;
    if (this.open.size >= this.options.maxConnections) {
      conns.rejected++;
      socket.on("error", () => {});
      socket.end("ERROR Too many open connections\r\n");
      return;
    }
    conns.current++;
    conns.total++;
    const connection = new Connection(this.options, this.commands, this.info, this.log);
    const own = readInto(socket, connection);
    connection.attach(own);
    this.open.add(connection);
    own.once("close", () => {
      conns.current--;
      this.open.delete(connection);
    });
  }
}

/** What a socket made by readInto reads into and reports to. */
interface Reader {
  /**
   * The memory the next read goes into; undefined: the same as the last read's (Node then keeps
   * it, instead of taking a new view from JS after every read). The first call must give one.
   */
  nextBuffer(): Buffer | undefined;
  onRead(n: number, buf: Buffer): void;
}

const SLAB = 64 * 1024;
/** A slab with less room than this left is replaced, so that no read is starved. */
const MIN_READ = 16 * 1024;

/**
 * Moves an accepted connection to a socket that reads into memory the connection owns (Node's
 * `onread` option) instead of a fresh Buffer pushed through a Readable stream per read: with one
 * request in flight per connection, that machinery costs about a quarter of a request's CPU.
 * `onread` is offered only to sockets one constructs, so the accepted (paused, never read) socket
 * hands its handle over and is released without touching it.
 */
function readInto(accepted: Socket, reader: Reader): Socket {
  const raw = accepted as unknown as { _handle: unknown };
  const handle = raw._handle;
  raw._handle = null;
  accepted.destroy();
  const socket = new Socket({
    handle,
    allowHalfOpen: true,
    onread: {
      buffer: () => reader.nextBuffer(),
      callback: (n: number, buf: Uint8Array) => reader.onRead(n, buf as Buffer),
    },
  } as ConstructorParameters<typeof Socket>[0]);
  return socket;
}

/** Small enough to come from Node's buffer pool: most held-back replies are a line or one value. */
const SLOT_CHUNK = 512;

const RESOLVED = Promise.resolve();

/** Numbers every packet read, by any connection (see CommandHandler.execute). */
let packets = 0;

/** Replies held back before the connection stops reading more requests. */
const MAX_WAITING = 1024;

/** Numbers connections for `stats conns` and `stats threads`. */
let connectionIds = 0;

class Connection implements ConnectionView, Reader {
  readonly id = ++connectionIds;
  peer = "";
  private socket!: Socket;
  private writer!: SocketWriter;
  readonly openedAt = Date.now();
  /** performance.now() of the last bytes read or streamed: idle connections are closed by it. */
  lastCommandAt = performance.now();
  lastOp = "";
  private readonly out = new ReplyBuffer();
  private readonly parser: RequestParser;
  private closing = false;
  /** The buffer the next held-back reply is written into (made only once one is used). */
  private spare = new ReplyBuffer(SLOT_CHUNK);
  /** Replies not yet sent because an earlier one waits for the engine. */
  private readonly waiting: Slot[] = [];
  private readonly state: ConnectionState;

  /**
   * Reads land in a slab at `offset`. A read whose bytes no request kept is overwritten by the
   * next; one that a request kept a view of (a value on its way to the engine or a replica, raw
   * bytes a proxy forwards) moves the offset past it, and a used-up slab is left to the views
   * still holding it.
   */
  private slab = Buffer.allocUnsafeSlow(SLAB);
  private offset = 0;
  private view = this.slab;

  /** Whether the next read goes elsewhere than the last (the first read: yes). */
  private moved = true;

  nextBuffer(): Buffer | undefined {
    if (!this.moved) return undefined;
    this.moved = false;
    return this.view;
  }

  onRead(n: number, buf: Buffer): void {
    this.onData(buf, n);
    if (!this.parser.retained) return;
    this.parser.retained = false;
    this.offset += n;
    if (SLAB - this.offset < MIN_READ) {
      this.slab = Buffer.allocUnsafeSlow(SLAB);
      this.offset = 0;
    }
    this.view = this.slab.subarray(this.offset);
    this.moved = true;
  }

  constructor(
    options: MemcacheServerOptions,
    private readonly commands: CommandHandler,
    private readonly info: ServerCounters,
    private readonly log: Logger,
  ) {
    this.parser = new RequestParser(
      options.limits,
      (req) => this.handle(req),
      (line) => {
        this.log.warn("client dropped", {
          reason: line || "not the memcached text protocol",
          peer: this.socket.remoteAddress,
        });
        if (this.waiting.length === 0) {
          if (line !== "") this.out.line(line);
          this.quit();
          return;
        }
        // After the replies still owed to the requests before it, then the connection closes.
        const slot = Slot.answered(new ReplyBuffer(SLOT_CHUNK), false);
        if (line !== "") slot.out.line(line);
        this.waiting.push(slot);
        this.parser.halted = true;
      },
      options.secret,
      info.traffic,
      options.keepRaw,
    );
    this.state = new PeerAware(this.parser);
  }

  /** Called once the socket exists (readInto makes it with this connection as its reader). */
  attach(socket: Socket): void {
    this.socket = socket;
    this.writer = new SocketWriter(socket, this.drained);
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on("end", () => {
      this.quit();
      if (this.waiting.length === 0) socket.end();
    });
    socket.on("drain", this.drained);
    socket.on("close", this.drained);
    // Peers vanish (resets, broken pipes): the socket closes itself; nothing to report to anyone.
    socket.on("error", () => {});
  }

  /**
   * Replies leave in request order. While a reply waits for the engine, later requests still run
   * (the store keeps per-key order) but their replies wait in slots behind it.
   */
  get owed(): number {
    return this.waiting.length;
  }

  close(): void {
    this.socket.destroy();
  }

  private handle(req: Request): void {
    this.lastOp = req.op;
    const timed = this.info.latency !== undefined;
    if (this.waiting.length === 0) {
      // The first waiting reply writes straight into `out`: everything before it is already there.
      const r = this.commands.execute(req, this.out, this.stream, packets, this.state);
      if (r === FOLLOWS) return;
      if (typeof r !== "boolean") {
        this.wait(r, this.out, timed ? req.op : undefined);
        return;
      }
      if (!r) this.quit();
    } else {
      const out = this.spare;
      const r = this.commands.execute(req, out, undefined, packets, this.state);
      if (r === FOLLOWS) return;
      this.spare = new ReplyBuffer(SLOT_CHUNK);
      if (typeof r !== "boolean") this.wait(r, out, timed ? req.op : undefined);
      else {
        // quit: nothing after it is read, but it is answered after the replies before it.
        if (!r) this.parser.halted = true;
        this.waiting.push(Slot.answered(out, r));
      }
      if (this.waiting.length >= MAX_WAITING) this.socket.pause();
      if (typeof r !== "boolean") return;
    }
    if (timed) {
      if (req.op === this.runOp) this.runLength++;
      else this.startRun(req.op);
    }
  }

  /**
   * Latency costs one clock read per packet, not two per request: requests answered at once are
   * counted and timed together when their packet's replies are written; waiting ones are timed
   * from their packet's arrival to their release.
   */
  private packetStart = 0;
  /** Requests answered at once in this packet, as runs of one command (pipelines repeat one). */
  private runOp = "";
  private runLength = 0;
  /** Earlier runs of the packet, as parallel lists kept from packet to packet (no allocation). */
  private readonly runOps: string[] = [];
  private readonly runCounts: number[] = [];
  private runs = 0;

  private startRun(op: string): void {
    if (this.runLength > 0) {
      this.runOps[this.runs] = this.runOp;
      this.runCounts[this.runs++] = this.runLength;
    }
    this.runOp = op;
    this.runLength = 1;
  }

  private recordRuns(latency: LatencyRecorder): void {
    const seconds = (performance.now() - this.packetStart) / 1000;
    for (let i = 0; i < this.runs; i++) latency.record(this.runOps[i] as string, seconds, this.runCounts[i]);
    latency.record(this.runOp, seconds, this.runLength);
    this.runs = 0;
    this.runOp = "";
    this.runLength = 0;
  }

  /** For a long reply at the head of the line (dump): send what is ready, then wait for the socket. */
  private readonly stream = (): Promise<void> => {
    this.lastCommandAt = performance.now();
    this.flush();
    if (!this.writer.full || this.socket.destroyed) return RESOLVED;
    return new Promise((resolve) => {
      this.streamWaits = resolve;
    });
  };

  /** The stream waiting for the socket to send what it holds. */
  private streamWaits: (() => void) | undefined;

  /** The socket sent all it held (or closed): readers paused for it and a waiting stream go on. */
  private readonly drained = (): void => {
    if (this.writer.full && !this.socket.destroyed) return;
    const resume = this.streamWaits;
    this.streamWaits = undefined;
    resume?.();
    if (this.waiting.length < MAX_WAITING && !this.socket.destroyed) this.socket.resume();
  };

  /**
   * Puts a reply that is not ready in line: a Later (which writes into `out`, the buffer its
   * request was given) is its own slot; a promise gets one. `op`: timed, from its packet's arrival
   * to its release.
   */
  private wait(r: Promise<boolean> | Later, out: ReplyBuffer, op: string | undefined): void {
    let slot: Slot;
    if (r instanceof Later) slot = r;
    else {
      const held = new Slot(out);
      r.then((keep) => held.settle(keep, 1));
      slot = held;
    }
    if (op !== undefined) {
      slot.timed = op;
      slot.started = this.packetStart;
    }
    this.waiting.push(slot);
    if (slot.ready) this.settled();
    else slot.owner = this;
  }

  /** A waiting reply is done. */
  settled(): void {
    // The only reply owed, outside a packet's parsing (one request in flight): it leaves now.
    if (this.waiting.length === 1 && !this.parsing) {
      this.release();
      return;
    }
    // Replies that finish together (one engine batch, one node's packet) leave together, in one write.
    if (!this.releaseQueued) {
      this.releaseQueued = true;
      // A resolved promise, not queueMicrotask: Node wraps each queueMicrotask callback in an
      // AsyncResource, a cost paid on every reply of the proxy.
      RESOLVED.then(this.release);
    }
  }

  /** A packet is being parsed: replies that finish meanwhile wait for the end of it. */
  private parsing = false;

  private releaseQueued = false;

  /** Moves finished replies at the head of the line into `out` and sends them. */
  private readonly release = (): void => {
    this.releaseQueued = false;
    const waiting = this.waiting;
    const latency = this.info.latency;
    const now = latency === undefined ? 0 : clock();
    let n = 0;
    while (n < waiting.length && (waiting[n] as Slot).ready) {
      const slot = waiting[n++] as Slot;
      if (slot.timed !== undefined) latency?.record(slot.timed, (now - slot.started) / 1000, slot.count);
      if (slot.out !== this.out) this.out.append(slot.out);
      if (!slot.keep) {
        this.quit();
        n = waiting.length;
      }
    }
    // Emptied by pops: setting the length drops the array's storage, which the next push regrows.
    if (n === waiting.length) while (waiting.length > 0) waiting.pop();
    else waiting.splice(0, n);
    this.flush();
    if (this.closing && waiting.length === 0) this.socket.end();
    else if (waiting.length < MAX_WAITING / 2 && this.socket.isPaused() && !this.writer.full)
      this.socket.resume();
  };

  /** Bytes 0 to `n` of `chunk` were read. */
  private onData(chunk: Buffer, n: number): void {
    this.info.traffic.bytesRead += n;
    packets++;
    // One clock read a packet, for latency and for the idle check alike.
    const now = performance.now();
    this.lastCommandAt = now;
    this.packetStart = now;
    const latency = this.info.latency;
    this.parsing = true;
    try {
      this.parser.push(chunk, n);
    } finally {
      this.parsing = false;
    }
    this.flush();
    if (latency !== undefined && this.runLength > 0) this.recordRuns(latency);
    if (this.closing && this.waiting.length === 0) this.socket.end();
  }

  private quit(): void {
    this.closing = true;
    this.parser.halted = true;
  }

  private flush(): void {
    const socket = this.socket;
    let ok: boolean;
    let n = 0;
    const one = this.out.takeOne();
    if (one !== undefined) {
      n = one.length;
      ok = this.writer.write(one);
      if (this.writer.taken) this.out.reuse();
    } else {
      if (this.out.empty) return;
      const pieces = this.out.take();
      socket.cork();
      ok = true;
      for (const piece of pieces) {
        n += piece.length;
        ok = socket.write(piece) && ok;
      }
      socket.uncork();
    }
    this.info.traffic.bytesWritten += n;
    // A client that sends without reading its replies is paused until it catches up.
    if (!ok) socket.pause();
  }
}
