/**
 * The proxy's HTTP key API, on Node and in a Worker alike: a node's API (protocol/http-kv.ts) plus
 * multi-get `GET /v1/kv?keys=a,b`. Each request goes to the node that owns its key, over that node's
 * HTTP API, and the node's answer comes back as it is: one API, one shape (versions, ETags, 304,
 * 412s). Reads fail over to the other replicas at once; writes wait (bounded) for a new master.
 */
import type { Context, Hono } from "hono";
import { ClientError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { allowMethods, fail, keyPath, readValue, urlKey } from "../protocol/http-kv.js";
import {
  type FailureHooks,
  type MapFeed,
  ProxyFailure,
  readFromReplicas,
  writeToMaster,
} from "./failover.js";
import type { Router } from "./router.js";
import type { HttpRequest, HttpTransport } from "./transports/http-transport.js";

/** Where a request for a key goes: the runtime's map, transport and failover rules. */
export interface KvForwarder {
  /** From a replica of the key's partition; another one when it fails. */
  read(key: string, req: HttpRequest): Promise<Response>;
  /** To the key's master; a new master when it fails, until the write wait ends. */
  write(key: string, req: HttpRequest): Promise<Response>;
}

/** A node answers 5xx when it cannot serve (engine down, not or no longer the master). */
const refusedRead = (res: Response): boolean => res.status >= 500;
const notMaster = (res: Response): boolean => {
  if (res.status !== 503) return false;
  void res.body?.cancel();
  return true;
};

/** The forwarder of a runtime that has a router, a map feed and a way to report a node. */
export function httpForwarder(
  router: Router,
  transport: HttpTransport,
  maps: MapFeed,
  unreachable: FailureHooks<Response>["unreachable"],
  writeWaitMs: number,
): KvForwarder {
  const hooks: FailureHooks<Response> = { unreachable, refused: (_node, res) => void res.body?.cancel() };
  return {
    read: (key, req) => readFromReplicas(router, transport, key, req, refusedRead, hooks),
    write: (key, req) =>
      writeToMaster(router, transport, maps, key, req, notMaster, hooks, Date.now() + writeWaitMs),
  };
}

export interface ProxyHttpOptions {
  maxKey: number;
  maxValue: number;
}

/** Request headers a node's key API reads. */
const FORWARDED = ["If-Match", "If-None-Match", "X-Flare-TTL", "X-Flare-Flags", "Content-Type"];

function headersOf(c: Context): Headers {
  const h = new Headers();
  for (const name of FORWARDED) {
    const v = c.req.header(name);
    if (v !== undefined) h.set(name, v);
  }
  return h;
}

/** The node's path for the request's key (and any sub-path and query), canonically encoded. */
function nodePath(c: Context, key: string, rest = ""): string {
  const url = c.req.url;
  const query = url.indexOf("?");
  return keyPath(key) + rest + (query < 0 ? "" : url.slice(query));
}

/** Adds the key routes to `app`; `forwarder` gives each request the runtime's way to the nodes. */
export function mountKvProxy<E extends object>(
  app: Hono<E>,
  forwarder: (c: Context<E>) => KvForwarder,
  options: ProxyHttpOptions,
  log: Logger,
): Hono<E> {
  const keyOf = (c: Context): string => urlKey(c, options.maxKey);

  app.get("/v1/kv", async (c) => {
    const keys = (c.req.query("keys") ?? "")
      .split(",")
      .filter((k) => k !== "")
      .map((k) => Buffer.from(k, "utf8").toString("latin1"));
    if (keys.length === 0) throw new ClientError("BAD_KEY", "keys=a,b,... names the keys to read");
    for (const key of keys) if (key.length > options.maxKey) throw new ClientError("BAD_KEY", "key too long");
    const fwd = forwarder(c);
    const found = await Promise.all(
      keys.map(async (key) => {
        const res = await fwd.read(key, { method: "GET", path: keyPath(key), headers: new Headers() });
        if (res.status !== 200) {
          await res.body?.cancel();
          return undefined;
        }
        const value = Buffer.from(await res.arrayBuffer()).toString("base64");
        const flags = Number(res.headers.get("X-Flare-Flags") ?? 0);
        const version = (res.headers.get("ETag") ?? "").replaceAll('"', "");
        return [Buffer.from(key, "latin1").toString("utf8"), { value, flags, version }] as const;
      }),
    );
    const items = Object.fromEntries(found.filter((f) => f !== undefined));
    return c.json({ items, encoding: "base64" });
  });

  // GET and HEAD alike: the node answers HEAD with the length and no body.
  app.get("/v1/kv/:key", async (c) => {
    const key = keyOf(c);
    return forwarder(c).read(key, { method: c.req.method, path: nodePath(c, key), headers: headersOf(c) });
  });

  app.put("/v1/kv/:key", async (c) => {
    const key = keyOf(c);
    const value = await readValue(c, options.maxValue);
    if (value instanceof Response) return value;
    const body = value as Uint8Array<ArrayBuffer>;
    const req = { method: "PUT", path: nodePath(c, key), headers: headersOf(c), body };
    return forwarder(c).write(key, req);
  });

  app.delete("/v1/kv/:key", async (c) => {
    const key = keyOf(c);
    return forwarder(c).write(key, { method: "DELETE", path: nodePath(c, key), headers: headersOf(c) });
  });
  allowMethods(app as unknown as Hono, "/v1/kv/:key", ["GET", "PUT", "DELETE"]);

  app.post("/v1/kv/:key/:op{incr|decr}", async (c) => {
    const key = keyOf(c);
    const req = { method: "POST", path: nodePath(c, key, `/${c.req.param("op")}`), headers: headersOf(c) };
    return forwarder(c).write(key, req);
  });
  allowMethods(app as unknown as Hono, "/v1/kv/:key/:op{incr|decr}", ["POST"]);

  app.notFound((c) => fail(c, 404, "NO_ROUTE", `no route ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof ClientError) return fail(c, 400, err.code, err.message);
    if (err instanceof ProxyFailure) return fail(c, 503, "UNAVAILABLE", err.message);
    log.error("proxy http request failed", { path: c.req.path, err });
    return fail(c, 503, "UNAVAILABLE", err instanceof Error ? err.message : String(err));
  });
  return app;
}
