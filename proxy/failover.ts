/**
 * What the proxy does when a node fails, on Node and in a Worker alike: a read is tried on the
 * partition's other replicas at once; a write waits (bounded) for a map that names a new master.
 */
import { type NodeEntry, nodeKey } from "../protocol/node-map.js";
import type { Router } from "./router.js";
import { type Transport, TransportError } from "./transports/transport.js";

/** A request the proxy gives up on; the client sees one SERVER_ERROR line (HTTP: 503). */
export class ProxyFailure extends Error {}

/** Where newer node maps come from: pushed by the index (Node) or long-polled from it (Worker). */
export interface MapFeed {
  readonly version: number;
  /**
   * Resolves true when a write is worth trying again: the map is newer than `version`, or a short
   * wait passed (a master that was only slow, or that has not yet heard it was promoted, needs no
   * newer map); false at `deadline`.
   */
  newerThan(version: number, deadline: number): Promise<boolean>;
}

export interface FailureHooks<Reply> {
  /** The node did not answer: tell the index, so it checks the node now. */
  unreachable(node: NodeEntry, err: TransportError): void;
  /** The node answered but refused the read (an engine error, say). */
  refused?(node: NodeEntry, reply: Reply): void;
}

/** Reads from the key's replicas by weight, skipping `tried`, until one answers. */
export async function readFromReplicas<Req, Reply>(
  router: Router,
  transport: Transport<Req, Reply>,
  key: string,
  req: Req,
  isRefusal: (reply: Reply) => boolean,
  hooks: FailureHooks<Reply>,
  tried = new Set<string>(),
): Promise<Reply> {
  for (;;) {
    const node = router.reader(key, tried);
    if (node === undefined)
      throw new ProxyFailure(tried.size === 0 ? "no partition available" : "no replica answered");
    try {
      const reply = await transport.request(node, req);
      if (!isRefusal(reply)) return reply;
      hooks.refused?.(node, reply);
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      hooks.unreachable(node, err);
    }
    tried.add(nodeKey(node.host, node.port));
  }
}

/**
 * Sends a write to the key's master. When the master cannot be reached or says it is no longer
 * one, waits for a map newer than the one the write went out with (`failedWith`, when a first try
 * already failed) until `deadline`, and tries the master that map names.
 */
export async function writeToMaster<Req, Reply>(
  router: Router,
  transport: Transport<Req, Reply>,
  maps: MapFeed,
  key: string,
  req: Req,
  isNotMaster: (reply: Reply) => boolean,
  hooks: FailureHooks<Reply>,
  deadline: number,
  failedWith?: number,
): Promise<Reply> {
  let seen = failedWith;
  for (;;) {
    if (seen !== undefined && !(await maps.newerThan(seen, deadline))) {
      throw new ProxyFailure("no master for this key: failover did not finish in time");
    }
    seen = maps.version;
    const master = router.writer(key);
    if (master === undefined) continue;
    try {
      const reply = await transport.request(master, req);
      if (!isNotMaster(reply)) return reply;
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      hooks.unreachable(master, err);
    }
  }
}
