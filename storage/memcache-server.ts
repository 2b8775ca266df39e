/**
 * The memcached text protocol over TCP. Each packet is parsed completely, every reply goes into one
 * buffer, and the buffer leaves in one write: pipelined clients cost one syscall per packet.
 */
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import type { Logger } from "../common/log.js";
import { type ParserLimits, RequestParser } from "../protocol/memcache/parser.js";
import { ReplyBuffer } from "../protocol/memcache/reply.js";
import type { MemcacheCommands, NodeInfo } from "./memcache-commands.js";

export interface MemcacheServerOptions {
  host: string;
  port: number;
  backlog: number;
  maxConnections: number;
  /** Idle seconds before a connection is closed (a client stalled mid-request included). */
  readTimeoutSeconds: number;
  limits: ParserLimits;
}

export class MemcacheServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly options: MemcacheServerOptions,
    private readonly commands: MemcacheCommands,
    private readonly info: NodeInfo,
    private readonly log: Logger,
  ) {
    this.server = createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  listen(): Promise<AddressInfo> {
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
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
  }

  private accept(socket: Socket): void {
    const conns = this.info.connections;
    if (this.sockets.size >= this.options.maxConnections) {
      conns.rejected++;
      socket.on("error", () => {});
      socket.end("ERROR Too many open connections\r\n");
      return;
    }
    conns.current++;
    conns.total++;
    this.sockets.add(socket);
    new Connection(socket, this.options, this.commands, this.info, this.log);
    socket.once("close", () => {
      conns.current--;
      this.sockets.delete(socket);
    });
  }
}

class Connection {
  private readonly out = new ReplyBuffer();
  private readonly parser: RequestParser;
  private closing = false;

  constructor(
    private readonly socket: Socket,
    options: MemcacheServerOptions,
    private readonly commands: MemcacheCommands,
    private readonly info: NodeInfo,
    private readonly log: Logger,
  ) {
    this.parser = new RequestParser(
      options.limits,
      (req) => {
        if (!this.commands.execute(req, this.out)) this.quit();
      },
      (line) => {
        this.log.warn("client dropped", { reason: line, peer: socket.remoteAddress });
        this.out.line(line);
        this.quit();
      },
    );
    socket.setTimeout(options.readTimeoutSeconds * 1000, () => socket.destroy());
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => socket.resume());
    // Peers vanish (resets, broken pipes): the socket closes itself; nothing to report to anyone.
    socket.on("error", () => {});
  }

  private onData(chunk: Buffer): void {
    this.info.traffic.bytesRead += chunk.length;
    this.parser.push(chunk);
    this.flush();
    if (this.closing) this.socket.end();
  }

  private quit(): void {
    this.closing = true;
    this.parser.halted = true;
  }

  private flush(): void {
    const pieces = this.out.take();
    if (pieces.length === 0) return;
    const socket = this.socket;
    let ok: boolean;
    let n = 0;
    if (pieces.length === 1) {
      const piece = pieces[0] as Buffer;
      n = piece.length;
      ok = socket.write(piece);
    } else {
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
