/**
 * The HTTP key API's request contract, shared by a node and the proxy: keys in URLs, ttl/flags,
 * conditional writes (If-Match = cas, If-None-Match: * = add), incr amounts, and JSON errors.
 */
import type { Context } from "hono";
import { z } from "zod";
import { ClientError } from "../common/errors.js";

export type ErrorStatus = 400 | 401 | 404 | 409 | 412 | 413 | 500 | 503;

/** `{error: {code, message}}`; a 503 says when to try again. */
export function fail(c: Context, status: ErrorStatus, code: string, message: string): Response {
  if (status === 503) c.header("Retry-After", "1");
  return c.json({ error: { code, message } }, status);
}

/** URL keys are UTF-8 text; stores key on bytes (one latin1 char per byte, as over memcached). */
export function urlKey(raw: string, maxKey: number): string {
  const key = Buffer.from(raw, "utf8").toString("latin1");
  if (key.length === 0 || key.length > maxKey)
    throw new ClientError("BAD_KEY", `key must be 1 to ${maxKey} bytes`);
  for (let i = 0; i < key.length; i++) {
    const ch = key.charCodeAt(i);
    if (ch <= 32 || ch === 127)
      throw new ClientError("BAD_KEY", "key must not contain spaces or control characters");
  }
  return key;
}

const putParams = z.object({
  ttl: z
    .string()
    .regex(/^-?\d+$/, "must be an integer number of seconds")
    .transform(Number)
    .pipe(z.number().int().min(-2147483648).max(2147483647))
    .default(0),
  flags: z
    .string()
    .regex(/^\d+$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().max(4294967295))
    .default(0),
});
const etag = /^(?:W\/)?"(\d{1,20})"$/;

export interface PutRequest {
  ttl: number;
  flags: number;
  mode: "set" | "add" | "cas";
  /** The version If-Match names (cas). */
  cas: bigint;
}

/** ttl and flags (query or X-Flare-TTL / X-Flare-Flags) and the condition of a PUT. */
export function putRequest(c: Context): PutRequest {
  const params = putParams.safeParse({
    ttl: c.req.query("ttl") ?? c.req.header("X-Flare-TTL"),
    flags: c.req.query("flags") ?? c.req.header("X-Flare-Flags"),
  });
  if (!params.success) {
    const issue = params.error.issues[0];
    throw new ClientError("BAD_REQUEST", `${String(issue?.path[0])}: ${issue?.message}`);
  }
  const ifMatch = c.req.header("If-Match");
  const ifNoneMatch = c.req.header("If-None-Match");
  if (ifMatch !== undefined) {
    const m = etag.exec(ifMatch.trim());
    if (m === null) throw new ClientError("BAD_REQUEST", 'If-Match must be an ETag such as "42"');
    return { ...params.data, mode: "cas", cas: BigInt(m[1] as string) };
  }
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== "*") throw new ClientError("BAD_REQUEST", "If-None-Match supports only *");
    return { ...params.data, mode: "add", cas: 0n };
  }
  return { ...params.data, mode: "set", cas: 0n };
}

/** `?by=N` of incr/decr: a 64-bit unsigned amount, 1 when absent. */
export function incrAmount(c: Context): bigint {
  const by = c.req.query("by") ?? "1";
  if (!/^\d{1,20}$/.test(by) || BigInt(by) >= 1n << 64n)
    throw new ClientError("BAD_REQUEST", "by: must be a whole number");
  return BigInt(by);
}

/** The 412 of a conditional PUT that was refused, by the memcached result that refused it. */
export function refusedPut(c: Context, result: "EXISTS" | "NOT_FOUND" | "NOT_STORED"): Response {
  switch (result) {
    case "EXISTS":
      return fail(c, 412, "CAS_MISMATCH", "the item changed since that version");
    case "NOT_FOUND":
      return fail(c, 412, "NOT_FOUND", "no such key to compare with");
    case "NOT_STORED":
      return fail(c, 412, "EXISTS", "the key already holds an item");
  }
}

/** The part of Node's IncomingMessage a body is read from (kept structural: Workers have none). */
interface BodyStream {
  on(event: "data", listener: (chunk: Buffer) => void): unknown;
  on(event: "end" | "close", listener: () => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
  readableEnded: boolean;
}

/**
 * The request's value, or the 413 that refuses it past `maxValue` (nothing past the limit is kept).
 * On Node the body is read from the socket stream @hono/node-server hands over as `env.incoming`:
 * building a fetch Request for it cost more than the whole store operation.
 */
export async function readValue(c: Context, maxValue: number): Promise<Uint8Array | Response> {
  const tooLarge = () => fail(c, 413, "TOO_LARGE", `value larger than item-size-max (${maxValue} bytes)`);
  if (Number(c.req.header("content-length") ?? 0) > maxValue) return tooLarge();
  const incoming = (c.env as { incoming?: BodyStream } | undefined)?.incoming;
  if (incoming === undefined || typeof incoming.on !== "function") {
    const body = new Uint8Array(await c.req.arrayBuffer());
    return body.length > maxValue ? tooLarge() : body;
  }
  if (incoming.readableEnded) return new Uint8Array(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const complete = await new Promise<boolean>((resolve, reject) => {
    incoming.on("data", (chunk) => {
      size += chunk.length;
      // Past the limit the rest is drained, not kept, so the 413 still reaches the client.
      if (size <= maxValue) chunks.push(chunk);
    });
    incoming.on("end", () => resolve(true));
    incoming.on("close", () => resolve(false));
    incoming.on("error", reject);
  });
  if (!complete) throw new ClientError("BAD_REQUEST", "the request body was cut off");
  if (size > maxValue) return tooLarge();
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}
