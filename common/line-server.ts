/**
 * A TCP server for line-based admin protocols (the index's flarei commands): one request per line,
 * replies in order, bounded lines, connection limit and idle timeout as on the data port.
 */
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { type AuthSession, answerCluster, type ClusterSecret } from "../protocol/cluster-auth.js";

export interface LineServerOptions {
  host: string;
  port: number;
  maxConnections: number;
  idleTimeoutSeconds: number;
  maxLine: number;
  /** The cluster's secret: `cluster hello`/`cluster auth` make a connection a peer (its session). */
  secret: ClusterSecret;
}

/** Reply lines for one request line; `close` ends the connection after them. */
export type LineReply = { lines: string[]; close?: boolean };
export type LineHandler = (line: string, session: AuthSession) => LineReply | Promise<LineReply>;

export class LineServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly options: LineServerOptions,
    private readonly handler: LineHandler,
  ) {
    this.server = createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ host: this.options.host, port: this.options.port }, () => {
        this.server.off("error", reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  get connections(): number {
    return this.sockets.size;
  }

  private accept(socket: Socket): void {
    socket.on("error", () => {});
    if (this.sockets.size >= this.options.maxConnections) {
      socket.end("ERROR Too many open connections\r\n");
      return;
    }
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    socket.setTimeout(this.options.idleTimeoutSeconds * 1000, () => socket.destroy());
    let buffer = "";
    // Requests are answered one after another, in order, even when a reply waits (map changes).
    let chain: Promise<void> = Promise.resolve();
    let closing = false;
    const session: AuthSession = {};
    socket.on("data", (d: Buffer) => {
      buffer += d.toString("latin1");
      let nl = buffer.indexOf("\n");
      while (nl >= 0 && !closing) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        chain = chain
          .then(async () => {
            if (socket.destroyed) return;
            const auth = line.startsWith("cluster ")
              ? answerCluster(this.options.secret, session, line.split(" "))
              : undefined;
            const reply =
              auth === undefined
                ? await this.handler(line, session)
                : { lines: [auth.line], close: auth.fatal };
            if (reply.lines.length > 0) socket.write(`${reply.lines.join("\r\n")}\r\n`);
            if (reply.close) socket.end();
          })
          .catch(() => {
            socket.end("SERVER_ERROR internal error\r\n");
          });
        if (line === "quit") closing = true;
        nl = buffer.indexOf("\n");
      }
      if (buffer.length > this.options.maxLine) {
        closing = true;
        chain = chain.then(() => {
          socket.end("CLIENT_ERROR line too long\r\n");
        });
      }
    });
  }
}
