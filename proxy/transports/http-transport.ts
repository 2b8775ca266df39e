/**
 * The proxy's transport in a Worker: each node's HTTP key API, with fetch (the runtime pools the
 * connections). A node that announced no HTTP port cannot be reached this way.
 */
import { type NodeEntry, nodeKey } from "../../protocol/node-map.js";
import { type Transport, TransportError } from "./transport.js";

export interface HttpRequest {
  method: string;
  /** Path and query, as the node's API has them (the proxy's API is the same). */
  path: string;
  headers: Headers;
  body?: Uint8Array<ArrayBuffer>;
}

/**
 * How the runtime sends a request, given up after `timeoutMs`: a Worker's fetch; on Node, undici's
 * request API (see node-fetch.ts).
 */
export type Fetch = (url: string, init: RequestInit, timeoutMs: number) => Promise<Response>;

export class HttpTransport implements Transport<HttpRequest, Response> {
  constructor(
    private readonly timeoutMs: number,
    // Called unbound: a Worker's fetch refuses to run with another `this`.
    private readonly fetchImpl: Fetch = (url, init, timeoutMs) =>
      fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) }),
  ) {}

  async request(node: NodeEntry, req: HttpRequest): Promise<Response> {
    const name = nodeKey(node.host, node.port);
    if (node.httpPort === undefined) throw new TransportError(name, "the node announced no HTTP port");
    try {
      return await this.fetchImpl(
        `http://${node.host}:${node.httpPort}${req.path}`,
        { method: req.method, headers: req.headers, body: req.body },
        this.timeoutMs,
      );
    } catch (err) {
      throw new TransportError(name, err instanceof Error ? err.message : String(err));
    }
  }
}
