/**
 * The HTTP side of "any node answers any key": a request to a node's HTTP API for a key it does
 * not serve is answered as the proxy answers it, from the key's owner over the owner's HTTP API.
 * Loaded only by a node with an HTTP API.
 */
import { Hono } from "hono";
import type { Logger } from "../common/log.js";
import type { ClusterMember } from "../protocol/cluster-member.js";
import { PASSED_ON } from "../protocol/http-kv.js";
import { httpForwarder, mountKvProxy } from "../proxy/http-app.js";
import { HttpTransport } from "../proxy/transports/http-transport.js";
import { nodeFetch } from "../proxy/transports/node-fetch.js";
import type { Forwarding } from "./forwarding.js";
import type { PassOn } from "./http-app.js";

export interface HttpPassOnOptions {
  /** How this node names itself to the owner (in the PASSED_ON header). */
  self: string;
  requestTimeoutMs: number;
  writeWaitMs: number;
  maxKey: number;
  maxValue: number;
}

export function httpPassOn(
  forwarding: Forwarding,
  member: ClusterMember,
  options: HttpPassOnOptions,
  log: Logger,
): PassOn {
  const transport = new HttpTransport(options.requestTimeoutMs, nodeFetch({ [PASSED_ON]: options.self }));
  const forwarder = httpForwarder(
    forwarding.router,
    transport,
    forwarding.commands.maps,
    // The index watches every node itself; a peer that did not answer is not ours to report.
    () => {},
    options.writeWaitMs,
  );
  const app = mountKvProxy(new Hono(), () => forwarder, options, log);
  return {
    servesHere: (key, write) => member.servesHere(key, write),
    fetch: (req) => app.fetch(req),
  };
}
