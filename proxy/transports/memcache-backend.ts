/**
 * The proxy's connections to one storage node over the memcached text protocol: a few persistent
 * connections (`proxy-concurrency`), requests pipelined on each, replies matched in order. A dead
 * connection fails its requests at once (error/close), a slow one after the request timeout.
 */
import { connect, type Socket } from "node:net";

/** How a reply ends: one line, or VALUE blocks up to END (or one error line). */
export type ReplyShape = "line" | "values";

export class BackendError extends Error {
  constructor(
    readonly node: string,
    message: string,
  ) {
    super(`${node}: ${message}`);
  }
}

interface Pending {
  shape: ReplyShape;
  resolve: (reply: Buffer) => void;
  reject: (err: Error) => void;
  deadline: number;
}

const MAX_REPLY = 64 * 1024 * 1024;

class BackendConnection {
  private socket: Socket | undefined;
  private readonly queue: Pending[] = [];
  private buf: Buffer = Buffer.alloc(0);
  /** Where the reply being read continues (bytes of `buf` already known to belong to it). */
  private scanned = 0;
  private timer: NodeJS.Timeout | undefined;
  private corked = false;
  dead = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs: number,
  ) {}

  get load(): number {
    return this.queue.length;
  }

  send(bytes: Buffer, shape: ReplyShape): Promise<Buffer> {
    if (this.socket === undefined) this.open();
    return new Promise((resolve, reject) => {
      this.queue.push({ shape, resolve, reject, deadline: Date.now() + this.timeoutMs });
      const socket = this.socket as Socket;
      // Everything sent to this node in the same tick leaves in one write (one syscall).
      if (!this.corked) {
        this.corked = true;
        socket.cork();
        process.nextTick(() => {
          this.corked = false;
          socket.uncork();
        });
      }
      socket.write(bytes);
      if (this.timer === undefined) this.arm();
    });
  }

  close(): void {
    this.fail("closed");
  }

  private open(): void {
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    this.socket = socket;
    socket.on("data", (d: Buffer) => this.onData(d));
    socket.on("error", (err) => this.fail(err.message));
    socket.on("close", () => this.fail("connection closed"));
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
    const err = new BackendError(`${this.host}:${this.port}`, reason);
    for (const p of this.queue.splice(0)) p.reject(err);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      const head = this.queue[0];
      if (head === undefined) {
        if (this.buf.length > 0) this.fail("reply nobody asked for");
        return;
      }
      const end = replyEnd(this.buf, this.scanned, head.shape);
      if (typeof end === "object" || end < 0) {
        if (typeof end === "object") this.scanned = end.resumeAt;
        if (this.buf.length > MAX_REPLY) this.fail("reply too large");
        return;
      }
      const reply = this.buf.subarray(0, end);
      this.buf = this.buf.subarray(end);
      this.scanned = 0;
      this.queue.shift();
      head.resolve(reply);
    }
  }
}

/**
 * Where the reply starting at 0 ends (exclusive), or -1 when more bytes are needed, or where to
 * resume scanning next time (a whole VALUE block already seen).
 */
function replyEnd(buf: Buffer, from: number, shape: ReplyShape): number | { resumeAt: number } {
  let pos = from;
  for (;;) {
    const nl = buf.indexOf(10, pos);
    if (nl < 0) return pos === from ? -1 : { resumeAt: pos };
    if (shape === "line") return nl + 1;
    // values: VALUE <key> <flags> <bytes> [<cas>] + block, until END or an error line
    if (buf[pos] === 86 && buf.toString("latin1", pos, pos + 6) === "VALUE ") {
      const fields = buf.toString("latin1", pos, nl).trimEnd().split(" ");
      const bytes = Number(fields[3]);
      const blockEnd = nl + 1 + bytes + 2;
      if (blockEnd > buf.length) return pos === from ? -1 : { resumeAt: pos };
      pos = blockEnd;
      continue;
    }
    return nl + 1;
  }
}

/** Connections to one node; requests go to the least loaded, so one slow reply holds up few others. */
export class Backend {
  private readonly conns: BackendConnection[] = [];

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly concurrency: number,
    private readonly timeoutMs: number,
  ) {}

  send(bytes: Buffer, shape: ReplyShape): Promise<Buffer> {
    for (let i = 0; i < this.conns.length; i++) {
      if ((this.conns[i] as BackendConnection).dead) this.conns.splice(i--, 1);
    }
    let best: BackendConnection | undefined;
    for (const c of this.conns) if (best === undefined || c.load < best.load) best = c;
    if (best === undefined || (best.load > 0 && this.conns.length < this.concurrency)) {
      best = new BackendConnection(this.host, this.port, this.timeoutMs);
      this.conns.push(best);
    }
    return best.send(bytes, shape);
  }

  close(): void {
    for (const c of this.conns.splice(0)) c.close();
  }
}
