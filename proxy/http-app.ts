/**
 * The proxy's HTTP key API, the same as a node's: `GET/PUT/DELETE /v1/kv/:key` (ttl and flags as
 * query or `X-Flare-TTL`/`X-Flare-Flags`, cas through If-Match, add through If-None-Match: *),
 * `POST /v1/kv/:key/incr|decr`, and multi-get `GET /v1/kv?keys=a,b`. Requests become memcached
 * requests to the owning node; a node that cannot be reached in time gives 503 with Retry-After.
 */

import type { Context } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import type { Logger } from "../common/log.js";
import { type ProxyCommands, ProxyFailure } from "./memcache-front.js";

export interface ProxyHttpOptions {
  maxKey: number;
  maxValue: number;
}

type Status = 400 | 404 | 412 | 413 | 500 | 503;

const putParams = z.object({
  ttl: z
    .string()
    .regex(/^-?\d{1,10}$/, "must be an integer number of seconds")
    .transform(Number)
    .default(0),
  flags: z
    .string()
    .regex(/^\d{1,10}$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().max(4294967295))
    .default(0),
});
const etag = /^(?:W\/)?"(\d{1,20})"$/;

function fail(c: Context, status: Status, code: string, message: string): Response {
  if (status === 503) c.header("Retry-After", "1");
  return c.json({ error: { code, message } }, status);
}

/** The VALUE blocks of a gets reply: key -> [flags, version, value]. */
function parseValues(reply: Buffer): Map<string, { flags: number; version: string; value: Buffer }> {
  const out = new Map<string, { flags: number; version: string; value: Buffer }>();
  let pos = 0;
  while (pos < reply.length) {
    const nl = reply.indexOf(10, pos);
    if (nl < 0) break;
    const line = reply.toString("latin1", pos, nl).trimEnd();
    if (!line.startsWith("VALUE ")) break;
    const [, key, flags, bytes, version] = line.split(" ");
    const start = nl + 1;
    out.set(key as string, {
      flags: Number(flags),
      version: version ?? "",
      value: reply.subarray(start, start + Number(bytes)),
    });
    pos = start + Number(bytes) + 2;
  }
  return out;
}

export function createProxyHttpApp(proxy: ProxyCommands, options: ProxyHttpOptions, log: Logger): Hono {
  const app = new Hono();

  const keyOf = (raw: string): string | null => {
    const key = Buffer.from(raw, "utf8").toString("latin1");
    if (key.length === 0 || key.length > options.maxKey) return null;
    for (let i = 0; i < key.length; i++) {
      const ch = key.charCodeAt(i);
      if (ch <= 32 || ch === 127) return null;
    }
    return key;
  };
  const badKey = (c: Context) =>
    fail(c, 400, "BAD_KEY", `key must be 1 to ${options.maxKey} bytes without spaces or control characters`);
  const lineOf = (reply: Buffer) => reply.toString("latin1").trimEnd();

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.get("/v1/kv", async (c) => {
    const keys = (c.req.query("keys") ?? "")
      .split(",")
      .filter((k) => k !== "")
      .map(keyOf);
    if (keys.length === 0 || keys.includes(null)) return badKey(c);
    const wanted = keys as string[];
    const reply = await proxy.forwardRead(wanted, Buffer.from(`gets ${wanted.join(" ")}\r\n`, "latin1"));
    const found = parseValues(Array.isArray(reply) ? Buffer.concat(reply) : reply);
    const items: Record<string, { value: string; flags: number; version: string }> = {};
    for (const [key, item] of found) {
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
    if (key === null) return badKey(c);
    const reply = await proxy.forwardRead([key], Buffer.from(`gets ${key}\r\n`, "latin1"));
    const item = parseValues(Array.isArray(reply) ? Buffer.concat(reply) : reply).get(key);
    if (item === undefined) return fail(c, 404, "NOT_FOUND", "no such key");
    return c.body(new Uint8Array(item.value), 200, {
      "Content-Type": "application/octet-stream",
      ETag: `"${item.version}"`,
      "X-Flare-Flags": String(item.flags),
    });
  });

  app.put(
    "/v1/kv/:key",
    bodyLimit({
      maxSize: options.maxValue,
      onError: (c) =>
        fail(c, 413, "TOO_LARGE", `value larger than item-size-max (${options.maxValue} bytes)`),
    }),
    async (c) => {
      const key = keyOf(c.req.param("key"));
      if (key === null) return badKey(c);
      const params = putParams.safeParse({
        ttl: c.req.query("ttl") ?? c.req.header("X-Flare-TTL"),
        flags: c.req.query("flags") ?? c.req.header("X-Flare-Flags"),
      });
      if (!params.success) {
        const issue = params.error.issues[0];
        return fail(c, 400, "BAD_REQUEST", `${String(issue?.path[0])}: ${issue?.message}`);
      }
      const ifMatch = c.req.header("If-Match");
      const ifNoneMatch = c.req.header("If-None-Match");
      let command = "set";
      let cas = "";
      if (ifMatch !== undefined) {
        const m = etag.exec(ifMatch.trim());
        if (m === null) return fail(c, 400, "BAD_REQUEST", 'If-Match must be an ETag such as "42"');
        command = "cas";
        cas = ` ${m[1]}`;
      } else if (ifNoneMatch !== undefined) {
        if (ifNoneMatch.trim() !== "*") return fail(c, 400, "BAD_REQUEST", "If-None-Match supports only *");
        command = "add";
      }
      const value = Buffer.from(await c.req.arrayBuffer());
      const head = `${command} ${key} ${params.data.flags} ${params.data.ttl} ${value.length}${cas}\r\n`;
      const reply = lineOf(
        await proxy.forwardWrite(
          key,
          Buffer.concat([Buffer.from(head, "latin1"), value, Buffer.from("\r\n")]),
        ),
      );
      switch (reply) {
        case "STORED":
          return c.json({ stored: true });
        case "EXISTS":
          return fail(c, 412, "CAS_MISMATCH", "the item changed since that version");
        case "NOT_FOUND":
          return fail(c, 412, "NOT_FOUND", "no such key to compare with");
        case "NOT_STORED":
          return fail(c, 412, "EXISTS", "the key already holds an item");
        default:
          return fail(c, 503, "UNAVAILABLE", reply);
      }
    },
  );

  app.delete("/v1/kv/:key", async (c) => {
    const key = keyOf(c.req.param("key"));
    if (key === null) return badKey(c);
    const reply = lineOf(await proxy.forwardWrite(key, Buffer.from(`delete ${key}\r\n`, "latin1")));
    if (reply === "DELETED") return c.body(null, 204);
    if (reply === "NOT_FOUND") return fail(c, 404, "NOT_FOUND", "no such key");
    return fail(c, 503, "UNAVAILABLE", reply);
  });

  app.post("/v1/kv/:key/:op{incr|decr}", async (c) => {
    const key = keyOf(c.req.param("key"));
    if (key === null) return badKey(c);
    const by = c.req.query("by") ?? "1";
    if (!/^\d{1,20}$/.test(by) || BigInt(by) >= 1n << 64n)
      return fail(c, 400, "BAD_REQUEST", "by: must be a whole number");
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
    if (err instanceof ProxyFailure) return fail(c, 503, "UNAVAILABLE", err.message);
    log.error("proxy http request failed", { path: c.req.path, err });
    return fail(c, 500, "INTERNAL", "internal error");
  });
  return app;
}
