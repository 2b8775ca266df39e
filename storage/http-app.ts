/**
 * The node's HTTP key API: `GET/PUT/DELETE /v1/kv/:key`, `POST /v1/kv/:key/incr|decr`, `/healthz`
 * (request contract in protocol/http-kv.ts). The version is the ETag.
 */
import { type Context, Hono } from "hono";
import type { Registry } from "prom-client";
import { ClientError, FlareError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { httpMetrics, metricsRoute } from "../common/metrics.js";
import {
  allowMethods,
  etagOf,
  fail,
  ifMatch,
  incrAmount,
  neverMatches,
  notModified,
  PASSED_ON,
  putRequest,
  readValue,
  refusedPut,
  urlKey,
} from "../protocol/http-kv.js";
import type { Item } from "./engine.js";
import type { Store } from "./store.js";

export interface HttpAppOptions {
  maxKey: number;
  maxValue: number;
  /** How long /healthz waits for the engine. */
  pingTimeoutMs: number;
  /** In a cluster: the replication wait of the write just applied (the memcached port's too). */
  acknowledged?: () => Promise<void> | undefined;
  /** In a cluster: why this node takes no client writes now (not the active master). */
  writeRefusal?: (key: string) => string | undefined;
  /** Served at /metrics; HTTP requests are counted into it. */
  metrics?: Registry;
  /** In a cluster: where a request for a key this node does not serve goes (see storage/forwarding.ts). */
  passOn?: PassOn;
}

export interface PassOn {
  servesHere(key: string, write: boolean): boolean;
  /** Answers the request as the proxy does: from the key's owner. */
  fetch(req: Request): Response | Promise<Response>;
}

export function createNodeHttpApp(store: Store, options: HttpAppOptions, log: Logger): Hono {
  const app = new Hono();
  if (options.metrics !== undefined) {
    app.use(httpMetrics(options.metrics));
    app.get("/metrics", metricsRoute(options.metrics));
  }
  const keyOf = (c: Context): string => urlKey(c, options.maxKey);
  /** A key this node does not serve: the owner's answer, unless a node passed the request here. */
  const onward = (c: Context, key: string, write: boolean): Response | Promise<Response> | undefined => {
    const passOn = options.passOn;
    if (passOn === undefined || passOn.servesHere(key, write) || c.req.header(PASSED_ON) !== undefined)
      return undefined;
    return passOn.fetch(c.req.raw);
  };
  /** Fencing, as on the memcached port: 503 so a proxy asks for the next map. */
  const fenced = (c: Context, key: string): Response | Promise<Response> | undefined => {
    const passed = onward(c, key, true);
    if (passed !== undefined) return passed;
    const refusal = options.writeRefusal?.(key);
    return refusal === undefined ? undefined : fail(c, 503, "NOT_MASTER", refusal);
  };

  const itemHeaders = (item: Item): Record<string, string> => ({
    ETag: etagOf(item.version),
    "X-Flare-Flags": String(item.flags),
    ...(item.expiresAt !== 0 ? { "X-Flare-Expires": new Date(item.expiresAt).toISOString() } : {}),
  });

  app.get("/healthz", async (c) =>
    (await store.healthy(options.pingTimeoutMs))
      ? c.json({ status: "ok", engine: store.engine.kind })
      : fail(c, 503, "UNAVAILABLE", `${store.engine.kind} engine unavailable`),
  );
  allowMethods(app, "/healthz", ["GET"]);

  app.get("/v1/kv/:key", async (c) => {
    const key = keyOf(c);
    const passed = onward(c, key, false);
    if (passed !== undefined) return passed;
    const item = await store.get(key);
    if (item === undefined) return fail(c, 404, "NOT_FOUND", "no such key");
    if (notModified(c, item.version)) return c.body(null, 304, itemHeaders(item));
    return c.body(item.value as Uint8Array<ArrayBuffer>, 200, {
      "Content-Type": "application/octet-stream",
      // HEAD is answered by this route without the body: the length must still be told.
      "Content-Length": String(item.value.length),
      ...itemHeaders(item),
    });
  });

  app.put("/v1/kv/:key", async (c) => {
    const key = keyOf(c);
    const refused = fenced(c, key);
    if (refused) return refused;
    const put = putRequest(c);
    const value = await readValue(c, options.maxValue);
    if (value instanceof Response) return value;
    if (put.never) return neverMatches(c);
    const result = await store.storeItem(put.mode, key, value, put.flags, put.ttl, put.cas);
    if (typeof result === "string") return refusedPut(c, result, put.mode);
    await options.acknowledged?.();
    return c.json({ stored: true, version: String(result.version) }, 200, itemHeaders(result));
  });

  app.delete("/v1/kv/:key", async (c) => {
    const key = keyOf(c);
    const refused = fenced(c, key);
    if (refused) return refused;
    const match = ifMatch(c);
    if (match === "never") return neverMatches(c);
    const result = await store.delete(key, 0, 0n, typeof match === "bigint" ? match : undefined);
    if (result === "EXISTS") return fail(c, 412, "CAS_MISMATCH", "the item changed since that version");
    await options.acknowledged?.();
    if (result === "DELETED") return c.body(null, 204);
    return match === undefined
      ? fail(c, 404, "NOT_FOUND", "no such key")
      : fail(c, 412, "NOT_FOUND", "no such key to compare with");
  });
  allowMethods(app, "/v1/kv/:key", ["GET", "PUT", "DELETE"]);

  app.post("/v1/kv/:key/:op{incr|decr}", async (c) => {
    const key = keyOf(c);
    const refused = fenced(c, key);
    if (refused) return refused;
    const result = await store.arithmetic(key, incrAmount(c), c.req.param("op") === "decr");
    await options.acknowledged?.();
    if (result === "NOT_FOUND") return fail(c, 404, "NOT_FOUND", "no such key");
    if (result === "NON_NUMERIC")
      return fail(c, 400, "NON_NUMERIC", "cannot increment or decrement a non-numeric value");
    return c.json({ value: result.toString() });
  });
  allowMethods(app, "/v1/kv/:key/:op{incr|decr}", ["POST"]);

  app.notFound((c) => fail(c, 404, "NO_ROUTE", `no route ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof ClientError) return fail(c, 400, err.code, err.message);
    if (err instanceof FlareError) return fail(c, 503, err.code, err.message);
    log.error("http request failed", { path: c.req.path, err });
    return fail(c, 500, "INTERNAL", "internal error");
  });
  return app;
}
