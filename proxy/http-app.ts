/**
 * The proxy's HTTP key API, the same as a node's (protocol/http-kv.ts) plus multi-get
 * `GET /v1/kv?keys=a,b`. Requests become memcached requests to the owning node; a node that cannot
 * be reached in time gives 503 with Retry-After.
 */
import { Hono } from "hono";
import type { Registry } from "prom-client";
import { ClientError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { httpMetrics, metricsRoute } from "../common/metrics.js";
import { fail, incrAmount, putRequest, readValue, refusedPut, urlKey } from "../protocol/http-kv.js";
import { type ValueBlock, valueBlocks } from "../protocol/memcache/values.js";
import { ProxyFailure } from "./failover.js";
import type { ProxyCommands } from "./memcache-front.js";

export interface ProxyHttpOptions {
  maxKey: number;
  maxValue: number;
  /** Served at /metrics; HTTP requests are counted into it. */
  metrics?: Registry;
}

const CRLF = Buffer.from("\r\n");

/** The VALUE blocks of a gets reply, by key. */
function parseValues(reply: Buffer | Buffer[]): Map<string, ValueBlock> {
  const blocks = valueBlocks(Array.isArray(reply) ? Buffer.concat(reply) : reply);
  return new Map(blocks.map((b) => [b.key, b]));
}

export function createProxyHttpApp(proxy: ProxyCommands, options: ProxyHttpOptions, log: Logger): Hono {
  const app = new Hono();
  if (options.metrics !== undefined) {
    app.use(httpMetrics(options.metrics));
    app.get("/metrics", metricsRoute(options.metrics));
  }
  const keyOf = (raw: string | undefined): string => urlKey(raw ?? "", options.maxKey);
  const lineOf = (reply: Buffer): string => reply.toString("latin1").trimEnd();
  const gets = (keys: string[]) =>
    proxy.forwardRead(keys, Buffer.from(`gets ${keys.join(" ")}\r\n`, "latin1"));

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.get("/v1/kv", async (c) => {
    const keys = (c.req.query("keys") ?? "")
      .split(",")
      .filter((k) => k !== "")
      .map(keyOf);
    if (keys.length === 0) throw new ClientError("BAD_KEY", "keys=a,b,... names the keys to read");
    const items: Record<string, { value: string; flags: number; version: string }> = {};
    for (const [key, item] of parseValues(await gets(keys))) {
      items[Buffer.from(key, "latin1").toString("utf8")] = {
        value: item.value.toString("base64"),
        flags: item.flags,
        version: item.version,
      };
    }
    return c.json({ items, encoding: "base64" });
  });

  app.get("/v1/kv/:key", async (c) => {
    const key = keyOf(c.req.param("key"));
    const item = parseValues(await gets([key])).get(key);
    if (item === undefined) return fail(c, 404, "NOT_FOUND", "no such key");
    return c.body(new Uint8Array(item.value), 200, {
      "Content-Type": "application/octet-stream",
      ETag: `"${item.version}"`,
      "X-Flare-Flags": String(item.flags),
    });
  });

  app.put("/v1/kv/:key", async (c) => {
    const key = keyOf(c.req.param("key"));
    const put = putRequest(c);
    const value = await readValue(c, options.maxValue);
    if (value instanceof Response) return value;
    const cas = put.mode === "cas" ? ` ${put.cas}` : "";
    const head = Buffer.from(
      `${put.mode} ${key} ${put.flags} ${put.ttl} ${value.length}${cas}\r\n`,
      "latin1",
    );
    const reply = lineOf(await proxy.forwardWrite(key, Buffer.concat([head, value, CRLF])));
    if (reply === "STORED") return c.json({ stored: true });
    if (reply === "EXISTS" || reply === "NOT_FOUND" || reply === "NOT_STORED") return refusedPut(c, reply);
    return fail(c, 503, "UNAVAILABLE", reply);
  });

  app.delete("/v1/kv/:key", async (c) => {
    const key = keyOf(c.req.param("key"));
    const reply = lineOf(await proxy.forwardWrite(key, Buffer.from(`delete ${key}\r\n`, "latin1")));
    if (reply === "DELETED") return c.body(null, 204);
    if (reply === "NOT_FOUND") return fail(c, 404, "NOT_FOUND", "no such key");
    return fail(c, 503, "UNAVAILABLE", reply);
  });

  app.post("/v1/kv/:key/:op{incr|decr}", async (c) => {
    const key = keyOf(c.req.param("key"));
    const by = incrAmount(c);
    const reply = lineOf(
      await proxy.forwardWrite(key, Buffer.from(`${c.req.param("op")} ${key} ${by}\r\n`, "latin1")),
    );
    if (/^\d+$/.test(reply)) return c.json({ value: reply });
    if (reply === "NOT_FOUND") return fail(c, 404, "NOT_FOUND", "no such key");
    if (reply.startsWith("CLIENT_ERROR"))
      return fail(c, 400, "NON_NUMERIC", "cannot increment or decrement a non-numeric value");
    return fail(c, 503, "UNAVAILABLE", reply);
  });

  app.notFound((c) => fail(c, 404, "NO_ROUTE", `no route ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof ClientError) return fail(c, 400, err.code, err.message);
    if (err instanceof ProxyFailure) return fail(c, 503, "UNAVAILABLE", err.message);
    log.error("proxy http request failed", { path: c.req.path, err });
    return fail(c, 500, "INTERNAL", "internal error");
  });
  return app;
}
