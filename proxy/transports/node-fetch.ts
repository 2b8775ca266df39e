/** How HTTP requests reach nodes on Node (the proxy's HTTP front, and a node passing one on). */
import { Agent, type Dispatcher, request as undiciRequest } from "undici";
import type { Fetch } from "./http-transport.js";

/** Headers about the node's connection to the proxy, not about the answer. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "date"]);

/**
 * How the HTTP front reaches nodes on Node: undici's request API (about 2.5× the requests per CPU
 * second of its fetch, which builds web streams and an AbortSignal per request), with kept-alive
 * connections to each node and both address families tried, as the memcached transport does (a
 * map names nodes as `localhost`). The node's answer, read whole (a value is at most
 * item-size-max), becomes a Response of the runtime's own kind with its body as bytes: the server
 * adapter writes that out in one go. `extra`: headers every request carries.
 */
export function nodeFetch(extra: Record<string, string> = {}): Fetch {
  const agent = new Agent({ connect: { autoSelectFamily: true } });
  return async (url, init, timeoutMs) => {
    const headers: Record<string, string> = { ...extra };
    (init.headers as Headers | undefined)?.forEach((value, name) => {
      headers[name] = value;
    });
    const res = await undiciRequest(url, {
      method: init.method as Dispatcher.HttpMethod,
      headers,
      body: init.body as Uint8Array | undefined,
      // undici's own timers: an AbortSignal.timeout per request costs more than the request.
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      dispatcher: agent,
    });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    const answer: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(res.headers))
      if (value !== undefined && !HOP_BY_HOP.has(name)) answer[name] = value;
    const empty = res.statusCode === 204 || res.statusCode === 304;
    return new Response(empty ? null : bytes, {
      status: res.statusCode,
      headers: answer as Record<string, string>,
    });
  };
}
