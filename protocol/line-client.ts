/**
 * A small client for Flare's line-based admin exchanges (index <-> node): one request at a time per
 * connection, a reply read line by line until a terminator, a deadline on each. A timeout or a
 * close fails what is pending and the connection is not reused.
 */
import { connect, type Socket } from "node:net";
import { authenticate, type Credentials } from "./cluster-auth.js";
import { LineReader } from "./line-reader.js";

const MAX_REPLY_LINE = 64 * 1024;

export class LineClientError extends Error {
  /** The socket's error code (ECONNREFUSED: nothing listens there), when one caused it. */
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** A reply ends at END, OK, or any error line; single-line replies end at their line. */
export const untilEnd = (line: string): boolean =>
  line === "END" || line === "ERROR" || line.startsWith("SERVER_ERROR") || line.startsWith("CLIENT_ERROR");
export const oneLine = (): boolean => true;

interface Pending {
  lines: string[];
  until: (line: string) => boolean;
  resolve: (lines: string[]) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class LineClient {
  private readonly reader = new LineReader();
  private readonly queue: Pending[] = [];
  private closedWith: Error | undefined;
  private readonly closeListeners: (() => void)[] = [];

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on("data", (d: Buffer) => this.onData(d));
    socket.on("error", (err) => this.fail(new LineClientError(err.message)));
    socket.on("close", () => this.fail(new LineClientError("connection closed")));
  }

  /** With `credentials`, the connection proves it is a cluster peer before it is handed out. */
  static connect(
    host: string,
    port: number,
    timeoutMs: number,
    credentials?: Credentials,
  ): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new LineClientError(`connect to ${host}:${port} timed out`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        if (credentials === undefined) {
          socket.removeAllListeners("error");
          resolve(new LineClient(socket));
          return;
        }
        authenticate(socket, credentials, timeoutMs).then(
          () => {
            socket.removeAllListeners("error");
            resolve(new LineClient(socket));
          },
          (err: Error) => reject(new LineClientError(`${host}:${port}: ${err.message}`)),
        );
      });
      socket.once("error", (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new LineClientError(err.message, err.code));
      });
    });
  }

  /**
   * One request on a connection of its own: connect (within `timeoutMs`), send `command` and CRLF,
   * read the reply up to `until` (within `timeoutMs` again), close.
   */
  static async ask(
    host: string,
    port: number,
    command: string,
    until: (line: string) => boolean = untilEnd,
    timeoutMs = 5000,
    credentials?: Credentials,
  ): Promise<string[]> {
    const client = await LineClient.connect(host, port, timeoutMs, credentials);
    try {
      return await client.request(`${command}\r\n`, until, timeoutMs);
    } finally {
      client.close();
    }
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  /** Sends `text` (lines with CRLF) and resolves with the reply lines up to the terminator. */
  request(text: string, until: (line: string) => boolean, timeoutMs: number): Promise<string[]> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new LineClientError(`no reply within ${timeoutMs} ms`));
        this.socket.destroy();
      }, timeoutMs);
      this.queue.push({ lines: [], until, resolve, reject, timer });
      this.socket.write(text);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    for (const line of this.reader.push(d)) {
      const head = this.queue[0];
      if (head === undefined) {
        this.fail(new LineClientError(`unexpected line: ${line}`));
        this.socket.destroy();
        return;
      }
      head.lines.push(line);
      if (head.until(line)) {
        this.queue.shift();
        clearTimeout(head.timer);
        head.resolve(head.lines);
      }
    }
    if (this.reader.pending > MAX_REPLY_LINE) {
      this.fail(new LineClientError("reply line too long"));
      this.socket.destroy();
    }
  }

  private fail(err: Error): void {
    if (this.closedWith === undefined) this.closedWith = err;
    for (const p of this.queue.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    for (const l of this.closeListeners.splice(0)) l();
  }
}
