/**
 * The proxy's transport on Node: the memcached text protocol, a few persistent connections per node
 * (`proxy-concurrency`), requests pipelined on each, replies matched in order. A dead connection
 * fails its requests at once (error/close), a slow one after the request timeout.
 */
import { connect, type Socket } from "node:net";
import { stampNow, unstamp } from "../../common/clock.js";
import { authenticate, type Credentials } from "../../protocol/cluster-auth.js";
import { byteIn, newlineAt } from "../../protocol/memcache/bytes.js";
import { ReplyBuffer } from "../../protocol/memcache/reply.js";
import { SocketWriter } from "../../protocol/memcache/socket-writer.js";
import { metaReplyEnd } from "../../protocol/memcache/values.js";
import { type NodeEntry, nodeKey } from "../../protocol/node-map.js";
import { type Transport, TransportError } from "./transport.js";

/**
 * How a reply ends. line: one line. values: VALUE blocks until END or an error line. meta: one meta reply (a line, or
 * `VA <n>` and its data block). quiet: meta replies, maybe none, until the `MN` of an `mn` sent after.
 */
export type ReplyShape = "line" | "values" | "meta" | "quiet";

/** Takes the replies to requests sent together (a method, so the hot path makes no closure). */
export interface ReplyTaker {
  /**
   * Called once with the replies, bytes `start` to `end` of a read buffer the connection shares
   * among replies (copy them or keep a view; never write to it) and how many of them are
   * SERVER_ERROR lines; or with the error that ended the connection first. Returns whether it
   * kept a view of the buffer: if not, the connection reads into that memory again.
   */
  replied(reply: Buffer | TransportError, start: number, end: number, serverErrors: number): boolean;
}

export interface ConnectionOptions {
  /** How long a node has to answer a request. */
  timeoutMs: number;
  /** The transport's connections with requests not written yet (a turn's, until its end). */
  unsent: Set<BackendConnection>;
  /** Set: connections authenticate as this cluster peer first (a node forwarding a client's request). */
  credentials?: Credentials;
}

/**
 * Requests sent together, answered together: `requests` replies of one shape. It is the caller's
 * object (the proxy's run is one, so a request makes no second object): the transport fills in
 * where and until when, and hands it the replies.
 */
export interface Sent extends ReplyTaker {
  readonly shape: ReplyShape;
  requests: number;
  deadline: number;
  /** The connection they went out on; undefined until sent. */
  conn: BackendConnection | undefined;
}

/** A Sent that hands its replies to a function, which may keep them: for the paths that are not hot. */
export class SentTo implements Sent {
  requests = 1;
  deadline = 0;
  conn: BackendConnection | undefined = undefined;

  constructor(
    readonly shape: ReplyShape,
    private readonly take: (
      reply: Buffer | TransportError,
      start: number,
      end: number,
      serverErrors: number,
    ) => void,
  ) {}

  replied(reply: Buffer | TransportError, start: number, end: number, serverErrors: number): boolean {
    this.take(reply, start, end, serverErrors);
    return true;
  }
}

const MAX_REPLY = 64 * 1024 * 1024;
const SLAB = 64 * 1024;
/** A slab with less room than this left is replaced, so that no read is starved. */
const MIN_READ = 16 * 1024;

export class BackendConnection {
  private socket: Socket | undefined;
  private writer: SocketWriter | undefined;
  private readonly queue: Sent[] = [];
  private buf: Buffer = Buffer.alloc(0);
  /** Where the unread replies in `buf` start. */
  private start = 0;
  /** Where the reply being read continues (bytes of `buf` already known to belong to it). */
  private scanned = 0;
  /** Replies of the head entry already read, and how many were SERVER_ERROR lines. */
  private seen = 0;
  private serverErrors = 0;
  private timer: NodeJS.Timeout | undefined;
  dead = false;
  /** Requests wait until the connection proved it is a cluster peer. */
  private authenticating = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly options: ConnectionOptions,
  ) {}

  private get timeoutMs(): number {
    return this.options.timeoutMs;
  }

  get load(): number {
    return this.queue.length;
  }

  /** Sends `sent`: the caller writes its request into the buffer returned, at once. */
  send(sent: Sent): ReplyBuffer {
    if (this.socket === undefined) this.open();
    // Requests of one turn leave together, so they share one reading of the clock.
    if (!this.flushQueued) {
      this.turnStarted = Date.now();
      this.flushQueued = true;
      setImmediate(this.flush);
      this.options.unsent.add(this);
    }
    sent.requests = 1;
    sent.deadline = this.turnStarted + this.timeoutMs;
    sent.conn = this;
    this.queue.push(sent);
    if (this.timer === undefined) this.arm();
    return this.outgoing;
  }

  /**
   * Adds a request to what `sent` sent, answered with it: the caller writes it into the buffer
   * returned. Only while `sent` is the last thing sent on this connection and not yet written (the
   * same turn of the event loop); else undefined.
   */
  add(sent: Sent): ReplyBuffer | undefined {
    if (this.dead || this.queue[this.queue.length - 1] !== sent || this.outgoing.empty) return undefined;
    sent.requests++;
    return this.outgoing;
  }

  /**
   * Everything sent to this node in one turn of the event loop (all the client packets read in it)
   * is written straight into one buffer and leaves in one write at the end of the turn, or sooner
   * when the transport reads replies first: one syscall for many requests, and no Buffer made per
   * request.
   */
  private readonly outgoing = new ReplyBuffer();
  private flushQueued = false;
  private turnStarted = 0;

  private readonly flush = (): void => {
    this.flushQueued = false;
    this.options.unsent.delete(this);
    if (this.socket === undefined || this.authenticating || this.dead) return;
    const writer = this.writer as SocketWriter;
    const one = this.outgoing.takeOne();
    if (one !== undefined) {
      writer.write(one);
      if (writer.taken) this.outgoing.reuse();
    } else if (!this.outgoing.empty) writer.write(Buffer.concat(this.outgoing.take()));
  };

  close(): void {
    this.fail("closed");
  }

  /**
   * Replies are read into a slab this connection owns (Node's `onread`), not into a fresh Buffer
   * pushed through a Readable stream per read. Replies are handed on as views. A read whose replies
   * were all copied, and that left no partial reply, is overwritten by the next: the memory stays
   * in the cache, as a connection's reply buffer does, and Node keeps the buffer it has instead of
   * taking a new view after every read. A read that someone kept a view of moves the next read
   * past it, and a used-up slab is left to those views.
   */
  private slab = Buffer.allocUnsafeSlow(SLAB);
  private offset = 0;
  /** Whether the next read goes elsewhere than the last (the first read: yes). */
  private moved = true;
  /** Whether a taker of this read's replies kept a view of them. */
  private kept = false;

  /** undefined: the next read goes where the last went (Node keeps the buffer it has). */
  private readonly nextBuffer = (): Buffer | undefined => {
    if (!this.moved) return undefined;
    this.moved = false;
    if (SLAB - this.offset < MIN_READ) {
      this.slab = Buffer.allocUnsafeSlow(SLAB);
      this.offset = 0;
    }
    return this.slab.subarray(this.offset);
  };

  /** Returns true: reading goes on (the connection never stops reading replies). */
  private readonly onRead = (n: number, buf: Uint8Array): boolean => {
    const chunk = (buf as Buffer).subarray(0, n);
    // The cluster handshake reads the socket's data events until it is done.
    if (this.authenticating) {
      this.kept = true;
      this.socket?.emit("data", chunk);
    } else {
      // Requests still waiting for the end of the turn go first: the node works on them while the
      // replies below are written to their clients (+2–4% one in flight, back to back).
      for (const c of this.options.unsent) c.flush();
      // The replies of one read leave timed by one reading of the clock.
      stampNow();
      try {
        this.onData(chunk);
      } finally {
        unstamp();
      }
    }
    // A partial reply left in the read is kept for the next one.
    if (this.kept || this.start < this.buf.length) {
      this.offset += n;
      this.moved = true;
    }
    this.kept = false;
    return true;
  };

  private open(): void {
    const socket = connect({
      host: this.host,
      port: this.port,
      noDelay: true,
      // Node's types want a buffer every time; it keeps the one it has when given none.
      onread: { buffer: this.nextBuffer as () => Uint8Array, callback: this.onRead },
    });
    this.socket = socket;
    // A node that is slow to take requests is not waited for: its requests time out instead.
    this.writer = new SocketWriter(socket, () => {});
    socket.on("error", (err) => this.fail(err.message));
    socket.on("close", () => this.fail("connection closed"));
    const credentials = this.options.credentials;
    if (credentials === undefined) return;
    this.authenticating = true;
    authenticate(socket, credentials, this.timeoutMs).then(
      () => {
        this.authenticating = false;
        this.flush();
      },
      (err: Error) => this.fail(err.message),
    );
  }

  private arm(): void {
    const head = this.queue[0];
    if (head === undefined) {
      this.timer = undefined;
      return;
    }
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        if ((this.queue[0]?.deadline ?? Number.POSITIVE_INFINITY) <= Date.now())
          this.fail(`no reply within ${this.timeoutMs} ms`);
        else this.arm();
      },
      Math.max(1, head.deadline - Date.now()),
    );
  }

  private fail(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.timer);
    this.socket?.destroy();
    this.outgoing.take();
    const err = new TransportError(`${this.host}:${this.port}`, reason);
    for (const p of this.queue.splice(0)) p.replied(err, 0, 0, 0);
  }

  private onData(d: Buffer): void {
    if (this.start >= this.buf.length) {
      this.buf = d;
      this.scanned = 0;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.start), d]);
      this.scanned -= this.start;
    }
    this.start = 0;
    const buf = this.buf;
    for (;;) {
      const head = this.queue[0];
      if (head === undefined) {
        if (this.start < buf.length) this.fail("reply nobody asked for");
        return;
      }
      while (this.seen < head.requests) {
        const end = this.replyEnd(buf, this.scanned, head.shape);
        if (end < 0) {
          this.scanned = -end - 1;
          if (buf.length - this.start > MAX_REPLY) this.fail("reply too large");
          return;
        }
        if (this.lastLineFailed) this.serverErrors++;
        this.scanned = end;
        this.seen++;
      }
      const start = this.start;
      const serverErrors = this.serverErrors;
      this.start = this.scanned;
      this.seen = 0;
      this.serverErrors = 0;
      this.queue.shift();
      if (head.replied(buf, start, this.scanned, serverErrors)) this.kept = true;
    }
  }

  /** Whether the last reply read ended in a SERVER_ERROR line (VALUE blocks end in END). */
  private lastLineFailed = false;

  /**
   * Where the reply whose unread part starts at `from` ends (exclusive); when more bytes are
   * needed, -1 - (where to resume: past the whole VALUE blocks already seen).
   */
  private replyEnd(buf: Buffer, from: number, shape: ReplyShape): number {
    if (shape === "meta" || shape === "quiet") return this.metaEnd(buf, from, shape === "quiet");
    let pos = from;
    for (;;) {
      const nl = newlineAt(buf, pos);
      if (nl < 0) return -1 - pos;
      // values: VALUE <key> <flags> <bytes> [<cas>] + block, until END or an error line
      if (
        shape === "values" &&
        buf[pos] === 86 &&
        buf[pos + 1] === 65 &&
        buf[pos + 2] === 76 &&
        buf[pos + 3] === 85 &&
        buf[pos + 4] === 69 &&
        buf[pos + 5] === 32
      ) {
        const blockEnd = nl + 1 + valueBytes(buf, pos + 6, nl) + 2;
        if (blockEnd > buf.length) return -1 - pos;
        pos = blockEnd;
        continue;
      }
      this.lastLineFailed = buf[pos] === 83 && buf[pos + 1] === 69;
      return nl + 1;
    }
  }

  /** replyEnd of meta replies; `quiet`: up to and with the `MN` line. */
  private metaEnd(buf: Buffer, from: number, quiet: boolean): number {
    let pos = from;
    for (;;) {
      const nl = newlineAt(buf, pos);
      if (nl < 0) return -1 - pos;
      const end = metaReplyEnd(buf, pos, nl);
      if (end > buf.length) return -1 - pos;
      this.lastLineFailed = buf[pos] === 83 && buf[pos + 1] === 69;
      if (!quiet || (buf[pos] === 77 && buf[pos + 1] === 78 && end - pos <= 4)) return end;
      pos = end;
    }
  }
}

/** The <bytes> field of a VALUE line: the third field after `VALUE `. */
function valueBytes(buf: Buffer, from: number, nl: number): number {
  const afterKey = byteIn(buf, 32, from, nl);
  const afterFlags = afterKey < 0 ? -1 : byteIn(buf, 32, afterKey + 1, nl);
  if (afterFlags < 0) return 0;
  let at = afterFlags + 1;
  let n = 0;
  for (let c = buf[at] as number; at < nl && c >= 48 && c <= 57; c = buf[++at] as number) n = n * 10 + c - 48;
  return n;
}

/**
 * Connections to one node. The requests of one event-loop turn share a connection (one write out,
 * their replies in one read back, so each client gets its replies in one write); the next turn takes
 * the least loaded connection, so one slow reply holds up few others.
 */
class Backend {
  private readonly conns: BackendConnection[] = [];
  private current: BackendConnection | undefined;
  private readonly endTurn = (): void => {
    this.current = undefined;
  };

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly concurrency: number,
    private readonly options: ConnectionOptions,
  ) {}

  send(sent: Sent): ReplyBuffer {
    let conn = this.current;
    if (conn === undefined || conn.dead) {
      conn = this.pick();
      this.current = conn;
      setImmediate(this.endTurn);
    }
    return conn.send(sent);
  }

  /** `send` as a promise, for the paths that are not hot (retries, fan-outs). */
  request(bytes: Buffer, shape: ReplyShape): Promise<Buffer> {
    return new Promise((resolve, reject) =>
      this.send(
        new SentTo(shape, (reply, start, end) =>
          reply instanceof TransportError ? reject(reply) : resolve(reply.subarray(start, end)),
        ),
      ).bytes(bytes),
    );
  }

  closed = false;

  close(): void {
    this.closed = true;
    for (const c of this.conns.splice(0)) c.close();
  }

  private pick(): BackendConnection {
    for (let i = 0; i < this.conns.length; i++) {
      if ((this.conns[i] as BackendConnection).dead) this.conns.splice(i--, 1);
    }
    let best: BackendConnection | undefined;
    for (const c of this.conns) if (best === undefined || c.load < best.load) best = c;
    if (best === undefined || (best.load > 0 && this.conns.length < this.concurrency)) {
      best = new BackendConnection(this.host, this.port, this.options);
      this.conns.push(best);
    }
    return best;
  }
}

export interface MemcacheRequest {
  bytes: Buffer;
  shape: ReplyShape;
}

export class MemcacheTransport implements Transport<MemcacheRequest, Buffer> {
  private readonly backends = new Map<string, Backend>();
  /** Each map's entries, to their node's connections: no name to build on the hot path. */
  private readonly backendOf = new WeakMap<NodeEntry, Backend>();

  private readonly options: ConnectionOptions;

  constructor(
    private readonly concurrency: number,
    timeoutMs: number,
    credentials?: Credentials,
  ) {
    this.options = { timeoutMs, credentials, unsent: new Set() };
  }

  /**
   * The hot path: the caller writes the request into the buffer returned, at once; the reply goes
   * to `sent`, no promise is made.
   */
  send(node: NodeEntry, sent: Sent): ReplyBuffer {
    return this.backend(node).send(sent);
  }

  /**
   * Adds a request to what `sent` sent, answered with it: the caller writes it into the buffer
   * returned. Undefined once what `sent` sent has been written.
   */
  add(sent: Sent): ReplyBuffer | undefined {
    return sent.conn?.add(sent);
  }

  request(node: NodeEntry, req: MemcacheRequest): Promise<Buffer> {
    return this.backend(node).request(req.bytes, req.shape);
  }

  /** Keeps connections to these nodes only (the others left the map). */
  retain(nodes: readonly NodeEntry[]): void {
    const live = new Set(nodes.map((n) => nodeKey(n.host, n.port)));
    for (const [key, b] of this.backends) {
      if (!live.has(key)) {
        b.close();
        this.backends.delete(key);
      }
    }
  }

  close(): void {
    for (const b of this.backends.values()) b.close();
    this.backends.clear();
  }

  /** The last node sent to, and its connections: most requests go where the one before went. */
  private lastNode: NodeEntry | undefined;
  private lastBackend: Backend | undefined;

  private backend(node: NodeEntry): Backend {
    const last = this.lastBackend;
    if (node === this.lastNode && last !== undefined && !last.closed) return last;
    const b = this.lookUp(node);
    this.lastNode = node;
    this.lastBackend = b;
    return b;
  }

  private lookUp(node: NodeEntry): Backend {
    const known = this.backendOf.get(node);
    if (known !== undefined && !known.closed) return known;
    const key = nodeKey(node.host, node.port);
    let b = this.backends.get(key);
    if (b === undefined) {
      b = new Backend(node.host, node.port, this.concurrency, this.options);
      this.backends.set(key, b);
    }
    this.backendOf.set(node, b);
    return b;
  }
}
