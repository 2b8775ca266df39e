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
  body?: ArrayBuffer;
}

export class HttpTransport implements Transport<HttpRequest, Response> {
  constructor(private readonly timeoutMs: number) {}

  async request(node: NodeEntry, req: HttpRequest): Promise<Response> {
    const name = nodeKey(node.host, node.port);
    if (node.httpPort === undefined) throw new TransportError(name, "the node announced no HTTP port");
    try {
      return await fetch(`http://${node.host}:${node.httpPort}${req.path}`, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new TransportError(name, err instanceof Error ? err.message : String(err));
    }
  }
}
