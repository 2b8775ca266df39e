/** A raw TCP conversation with a memcached-protocol server, for byte-exact assertions. */
import { connect, type Socket } from "node:net";

export class RawClient {
  private buffered = "";
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.buffered += d.toString("latin1");
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => {});
  }

  static open(port: number, host = "127.0.0.1"): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host }, () => resolve(new RawClient(socket)));
      socket.once("error", reject);
    });
  }

  send(data: string | Buffer): void {
    this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** Waits until what arrived so far ends with `suffix` (or the peer closed), then returns and clears it. */
  async readUntil(suffix: string, timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.buffered.endsWith(suffix) && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `timed out waiting for ${JSON.stringify(suffix)}; got ${JSON.stringify(this.buffered)}`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const out = this.buffered;
    this.buffered = "";
    return out;
  }

  /** Sends `request` and returns the reply, which must end with `suffix`. */
  async ask(request: string, suffix = "\r\n"): Promise<string> {
    this.send(request);
    return this.readUntil(suffix);
  }

  /** Resolves when the server closes the connection. */
  async waitClosed(timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("connection still open");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const out = this.buffered;
    this.buffered = "";
    return out;
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }
}
