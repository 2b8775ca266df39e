/**
 * Any node answers any key: a client's request for a key this node does not serve (another
 * partition's, or any key on a slave that is rebuilding or a proxy node) goes to the node that
 * does, through the proxy's forwarding core, and its reply comes back as that node wrote it. So a
 * client or proxy with a stale map, or one that knows a single node, still gets the right answer.
 *
 * Forwarded requests travel on authenticated connections, and a node never forwards what a cluster
 * peer sent it: one hop at most, whatever two maps disagree on.
 */
import type { Logger } from "../common/log.js";
import type { Credentials } from "../protocol/cluster-auth.js";
import type { ClusterMember } from "../protocol/cluster-member.js";
import { ReplyBuffer } from "../protocol/memcache/reply.js";
import type { Request } from "../protocol/memcache/request.js";
import {
  type ConnectionState,
  type Execution,
  type FOLLOWS,
  type Later,
  newServerCounters,
  settled,
} from "../protocol/memcache/server.js";
import { valueBlocks } from "../protocol/memcache/values.js";
import { ConnectionOrder, keysOf, NONE, touchOf } from "../proxy/connection-order.js";
import { ProxyCommands } from "../proxy/memcache-front.js";
import { Router } from "../proxy/router.js";

export const HERE = 0;
export const ELSEWHERE = 1;
/** A read of several keys, some of them served here. */
export const SPLIT = 2;
export type Route = typeof HERE | typeof ELSEWHERE | typeof SPLIT;

export type MultiRead = Extract<Request, { op: "get" | "gets" | "gat" | "gats" }>;

export interface ForwardingOptions {
  concurrency: number;
  requestTimeoutMs: number;
  writeWaitMs: number;
  version: string;
  credentials: Credentials;
}

export class Forwarding {
  readonly router = new Router();
  readonly commands: ProxyCommands;

  constructor(
    private readonly member: ClusterMember,
    options: ForwardingOptions,
    log: Logger,
  ) {
    this.commands = new ProxyCommands(
      this.router,
      member,
      { ...options, maxConnections: 0 },
      newServerCounters(),
      log,
      // The index watches every node itself; a peer that did not answer is not ours to report.
      () => {},
    );
  }

  /**
   * Where a client's `req` is answered: here, by other nodes, or a multi-key read by both. A
   * request that must come after one this connection passed on and is still in flight (a read of
   * a key whose write went to the master, say, on a slave) is passed on too, so the forwarding
   * core keeps the connection's order.
   */
  route(req: Request, conn: ConnectionState): Route {
    const route = this.where(req);
    const order = conn.handler;
    if (route === ELSEWHERE || !(order instanceof ConnectionOrder) || !("key" in req || "keys" in req))
      return route;
    const touch = touchOf(req);
    return touch !== NONE && order.mustWait(touch, keysOf(req)) ? ELSEWHERE : route;
  }

  private where(req: Request): Route {
    const member = this.member;
    // The whole cache, as through the proxy: every replica of every partition, this node too.
    if (req.op === "flush_all") return ELSEWHERE;
    if ("keys" in req) {
      const touch = req.op === "gat" || req.op === "gats";
      let here = 0;
      for (const key of req.keys) if (member.servesHere(key, touch)) here++;
      return here === req.keys.length ? HERE : here === 0 ? ELSEWHERE : SPLIT;
    }
    // Every command with one key writes (set family, incr/decr, delete, touch).
    if ("key" in req) return member.servesHere(req.key, true) ? HERE : ELSEWHERE;
    return HERE;
  }

  /**
   * A read of keys some of which this node serves: those are read here at once (so the read sees
   * this connection's earlier writes and none of its later ones), the others from their owners,
   * and the hits go out in the order asked, as one node would answer.
   */
  splitRead(
    req: MultiRead,
    out: ReplyBuffer,
    conn: ConnectionState,
    readHere: (part: MultiRead, out: ReplyBuffer) => Execution | Later | typeof FOLLOWS,
  ): Promise<boolean> {
    const touch = req.op === "gat" || req.op === "gats";
    const mine = req.keys.map((key) => this.member.servesHere(key, touch));
    const part = (here: boolean): MultiRead => ({
      ...req,
      keys: req.keys.filter((_, i) => mine[i] === here),
    });
    const local = new ReplyBuffer();
    const read = settled(readHere(part(true), local));
    const remote = new ReplyBuffer();
    const forwarded = settled(this.commands.execute(part(false), remote, undefined, 0, conn));
    return Promise.all([read, forwarded]).then(() => {
      const blocks = [valueBlocks(Buffer.concat(remote.take())), valueBlocks(Buffer.concat(local.take()))];
      const next = [0, 0];
      for (let i = 0; i < req.keys.length; i++) {
        const from = mine[i] ? 1 : 0;
        const block = blocks[from]?.[next[from] as number];
        if (block === undefined || block.key !== req.keys[i]) continue;
        out.bytes(block.block);
        next[from] = (next[from] as number) + 1;
      }
      out.line("END");
      return true;
    });
  }

  close(): void {
    this.commands.close();
  }
}
