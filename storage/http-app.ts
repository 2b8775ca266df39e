/**
 * The node's HTTP key API: `GET/PUT/DELETE /v1/kv/:key`, `POST /v1/kv/:key/incr|decr`, `/healthz`.
 * ttl and flags come as query parameters or `X-Flare-TTL` / `X-Flare-Flags` headers; the version is
 * the ETag, so `If-Match` is cas and `If-None-Match: *` is add. Errors are JSON `{error: {code, message}}`.
 */

import type { Context } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { ClientError, FlareError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { Item } from "./engine.js";
import type { Store } from "./store.js";

export interface HttpAppOptions {
  maxKey: number;
  maxValue: number;
}

const UINT32_MAX = 4294967295;
const digits = (max: number) =>
  z.string().regex(/^\d+$/, "must be a whole number").transform(Number).pipe(z.number().max(max));
const putParams = z.object({
  ttl: z
    .string()
    .regex(/^-?\d+$/, "must be an integer number of seconds")
    .transform(Number)
    .pipe(z.number().int().min(-2147483648).max(2147483647))
    .default(0),
  flags: digits(UINT32_MAX).default(0),
});
const arithmeticParams = z.object({
  by: z
    .string()
    .regex(/^\d{1,20}$/, "must be a whole number")
    .transform(BigInt)
    .pipe(z.bigint().max((1n << 64n) - 1n))
    .default(1n),
});
const etag = /^(?:W\/)?"(\d{1,20})"$/;

type Status = 400 | 404 | 412 | 413 | 500 | 503;

function fail(c: Context, status: Status, code: string, message: string): Response {
  return c.json({ error: { code, message } }, status);
}

export function createNodeHttpApp(store: Store, options: HttpAppOptions, log: Logger): Hono {
  const app = new Hono();

  /** URL keys are UTF-8 text; the store keys on bytes (one latin1 char per byte, as on the TCP side). */
  const keyOf = (c: Context): string => {
    const key = Buffer.from(c.req.param("key") ?? "", "utf8").toString("latin1");
    if (key.length === 0 || key.length > options.maxKey) {
      throw new ClientError("BAD_KEY", `key must be 1 to ${options.maxKey} bytes`);
    }
    for (let i = 0; i < key.length; i++) {
      const ch = key.charCodeAt(i);
      if (ch <= 32 || ch === 127)
        throw new ClientError("BAD_KEY", "key must not contain spaces or control characters");
    }
    return key;
  };

  const itemHeaders = (item: Item): Record<string, string> => ({
    ETag: `"${item.version}"`,
    "X-Flare-Flags": String(item.flags),
    ...(item.expiresAt !== 0 ? { "X-Flare-Expires": new Date(item.expiresAt).toISOString() } : {}),
  });

  app.get("/healthz", (c) =>
    store.engine.healthy()
      ? c.json({ status: "ok", engine: store.engine.kind })
      : fail(c, 503, "UNAVAILABLE", `${store.engine.kind} engine unavailable`),
  );

  app.get("/v1/kv/:key", async (c) => {
    const item = await store.get(keyOf(c));
    if (item === undefined) return fail(c, 404, "NOT_FOUND", "no such key");
    return c.body(item.value as Uint8Array<ArrayBuffer>, 200, {
      "Content-Type": "application/octet-stream",
      ...itemHeaders(item),
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
      const key = keyOf(c);
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
      let mode: "set" | "add" | "cas" = "set";
      let cas = 0n;
      if (ifMatch !== undefined) {
        const m = etag.exec(ifMatch.trim());
        if (m === null) return fail(c, 400, "BAD_REQUEST", 'If-Match must be an ETag such as "42"');
        mode = "cas";
        cas = BigInt(m[1] as string);
      } else if (ifNoneMatch !== undefined) {
        if (ifNoneMatch.trim() !== "*") return fail(c, 400, "BAD_REQUEST", "If-None-Match supports only *");
        mode = "add";
      }
      const value = new Uint8Array(await c.req.arrayBuffer());
      const result = await store.storeItem(mode, key, value, params.data.flags, params.data.ttl, cas);
      switch (result) {
        case "EXISTS":
          return fail(c, 412, "CAS_MISMATCH", "the item changed since that version");
        case "NOT_FOUND":
          return fail(c, 412, "NOT_FOUND", "no such key to compare with");
        case "NOT_STORED":
          return fail(c, 412, "EXISTS", "the key already holds an item");
        default:
          return c.json({ stored: true, version: String(result.version) }, 200, itemHeaders(result));
      }
    },
  );

  app.delete("/v1/kv/:key", async (c) => {
    const result = await store.delete(keyOf(c), 0, 0n);
    return result === "DELETED" ? c.body(null, 204) : fail(c, 404, "NOT_FOUND", "no such key");
  });

  app.post("/v1/kv/:key/:op{incr|decr}", async (c) => {
    const key = keyOf(c);
    const params = arithmeticParams.safeParse({ by: c.req.query("by") });
    if (!params.success) return fail(c, 400, "BAD_REQUEST", `by: ${params.error.issues[0]?.message}`);
    const result = await store.arithmetic(key, params.data.by, c.req.param("op") === "decr");
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
