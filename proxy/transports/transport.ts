/**
 * How the proxy reaches storage nodes. On Node: the memcached text protocol over pooled, pipelined
 * TCP connections (memcache-transport.ts); in a Worker: each node's HTTP API with fetch
 * (http-transport.ts). The failover rules (proxy/failover.ts) are written once against this.
 */
import type { NodeEntry } from "../../protocol/node-map.js";

/** The node could not be reached, or did not answer in time. A refusal is a reply, not this. */
export class TransportError extends Error {
  constructor(
    readonly node: string,
    message: string,
  ) {
    super(`${node}: ${message}`);
    this.name = "TransportError";
  }
}

export interface Transport<Req, Reply> {
  /** Rejects with TransportError only; a connection that dies fails its requests at once. */
  request(node: NodeEntry, req: Req): Promise<Reply>;
}
