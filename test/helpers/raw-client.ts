/** A raw TCP conversation with a memcached-protocol server, for byte-exact assertions. */
import { connect, type Socket } from "node:net";
import { ClusterSecret, type PeerRole } from "../../protocol/cluster-auth.js";

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

  /**
   * Proves the cluster secret (`token`; none = open mode) as a peer of `role`: what follows on this
   * connection is cluster traffic. Resolves with the server's last line (OK when accepted).
   */
  async authenticate(token?: string, role: PeerRole = "admin"): Promise<string> {
    const challenge = (await this.ask("cluster hello\r\n")).trim();
    const nonce = challenge.split(" ")[1] ?? "";
    const proof = new ClusterSecret(token).proof(role, nonce, "00112233445566778899aabbccddeeff");
    return this.ask(`cluster auth ${role} 00112233445566778899aabbccddeeff ${proof}\r\n`);
  }

  send(data: string | Buffer): void {
    this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** Waits until what arrived so far ends with `suffix` (or the peer closed), then returns and clears it. */
  async readUntil(suffix: string, timeoutMs = 5_000): Promise<string> {
    await this.waitFor(
      () => this.buffered.endsWith(suffix) || this.closed,
      timeoutMs,
      () => {
        return `timed out waiting for ${JSON.stringify(suffix)}; got ${JSON.stringify(this.buffered)}`;
      },
    );
    return this.take();
  }

  /** Sends `request` and returns the reply, which must end with `suffix`. */
  async ask(request: string, suffix = "\r\n"): Promise<string> {
    this.send(request);
    return this.readUntil(suffix);
  }

  /** Resolves with what arrived last when the server closes the connection. */
  async waitClosed(timeoutMs = 5_000): Promise<string> {
    await this.waitFor(
      () => this.closed,
      timeoutMs,
      () => "connection still open",
    );
    return this.take();
  }

  private take(): string {
    const out = this.buffered;
    this.buffered = "";
    return out;
  }

  private async waitFor(done: () => boolean, timeoutMs: number, why: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(why());
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
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
