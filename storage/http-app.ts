/**
 * The node's HTTP key API: `GET/PUT/DELETE /v1/kv/:key`, `POST /v1/kv/:key/incr|decr`, `/healthz`
 * (request contract in protocol/http-kv.ts). The version is the ETag.
 */
import { type Context, Hono } from "hono";
import type { Registry } from "prom-client";
import { ClientError, FlareError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { httpMetrics, metricsRoute } from "../common/metrics.js";
import { fail, incrAmount, putRequest, readValue, refusedPut, urlKey } from "../protocol/http-kv.js";
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
  writeRefusal?: () => string | undefined;
  /** Served at /metrics; HTTP requests are counted into it. */
  metrics?: Registry;
}

export function createNodeHttpApp(store: Store, options: HttpAppOptions, log: Logger): Hono {
  const app = new Hono();
  if (options.metrics !== undefined) {
    app.use(httpMetrics(options.metrics));
    app.get("/metrics", metricsRoute(options.metrics));
  }
  const keyOf = (raw: string | undefined): string => urlKey(raw ?? "", options.maxKey);
  /** Fencing, as on the memcached port: 503 so a proxy asks for the next map. */
  const fenced = (c: Context): Response | undefined => {
    const refusal = options.writeRefusal?.();
    return refusal === undefined ? undefined : fail(c, 503, "NOT_MASTER", refusal);
  };

  const itemHeaders = (item: Item): Record<string, string> => ({
    ETag: `"${item.version}"`,
    "X-Flare-Flags": String(item.flags),
    ...(item.expiresAt !== 0 ? { "X-Flare-Expires": new Date(item.expiresAt).toISOString() } : {}),
  });

  app.get("/healthz", async (c) =>
    (await store.healthy(options.pingTimeoutMs))
      ? c.json({ status: "ok", engine: store.engine.kind })
      : fail(c, 503, "UNAVAILABLE", `${store.engine.kind} engine unavailable`),
  );

  app.get("/v1/kv/:key", async (c) => {
    const item = await store.get(keyOf(c.req.param("key")));
    if (item === undefined) return fail(c, 404, "NOT_FOUND", "no such key");
    return c.body(item.value as Uint8Array<ArrayBuffer>, 200, {
      "Content-Type": "application/octet-stream",
      ...itemHeaders(item),
    });
  });

  app.put("/v1/kv/:key", async (c) => {
    const refused = fenced(c);
    if (refused) return refused;
    const key = keyOf(c.req.param("key"));
    const put = putRequest(c);
    const value = await readValue(c, options.maxValue);
    if (value instanceof Response) return value;
    const result = await store.storeItem(put.mode, key, value, put.flags, put.ttl, put.cas);
    if (typeof result === "string") return refusedPut(c, result);
    await options.acknowledged?.();
    return c.json({ stored: true, version: String(result.version) }, 200, itemHeaders(result));
  });

  app.delete("/v1/kv/:key", async (c) => {
    const refused = fenced(c);
    if (refused) return refused;
    const result = await store.delete(keyOf(c.req.param("key")), 0, 0n);
    await options.acknowledged?.();
    return result === "DELETED" ? c.body(null, 204) : fail(c, 404, "NOT_FOUND", "no such key");
  });

  app.post("/v1/kv/:key/:op{incr|decr}", async (c) => {
    const refused = fenced(c);
    if (refused) return refused;
    const key = keyOf(c.req.param("key"));
    const result = await store.arithmetic(key, incrAmount(c), c.req.param("op") === "decr");
    await options.acknowledged?.();
    if (result === "NOT_FOUND") return fail(c, 404, "NOT_FOUND", "no such key");
    if (result === "NON_NUMERIC")
      return fail(c, 400, "NON_NUMERIC", "cannot increment or decrement a non-numeric value");
    return c.json({ value: result.toString() });
  });

  app.notFound((c) => fail(c, 404, "NO_ROUTE", `no route ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof ClientError) return fail(c, 400, err.code, err.message);
    if (err instanceof FlareError) return fail(c, 503, err.code, err.message);
    log.error("http request failed", { path: c.req.path, err });
    return fail(c, 500, "INTERNAL", "internal error");
  });
  return app;
}
