/**
 * The HTTP key API's request contract, shared by a node and the proxy: keys in URLs, ttl/flags,
 * conditional requests (If-Match = cas, If-Match: * = replace, If-None-Match: * = add, a current
 * If-None-Match on GET = 304), incr amounts, methods allowed, and JSON errors.
 */
import type { Context, Hono } from "hono";
import { z } from "zod";
import { ClientError } from "../common/errors.js";

/**
 * Marks a request a node passed on to the key's owner: the owner answers it itself, so a request
 * makes one hop at most. A client may send it too; it then gets the answer of the node it asked.
 */
export const PASSED_ON = "X-Flare-Passed-On";

export type ErrorStatus = 400 | 401 | 404 | 405 | 409 | 412 | 413 | 500 | 503;

/** `{error: {code, message}}`; a 503 says when to try again. */
export function fail(c: Context, status: ErrorStatus, code: string, message: string): Response {
  if (status === 503) c.header("Retry-After", "1");
  return c.json({ error: { code, message } }, status);
}

/**
 * The key a request's URL names: the path segment after `/v1/kv/`, percent-decoded to bytes (any
 * bytes: a key stored over memcached with bytes that are not UTF-8 is reachable), kept as one latin1
 * char per byte as over memcached. A malformed escape is a 400, so two URLs never name one key by
 * accident of decoding.
 */
export function urlKey(c: Context, maxKey: number): string {
  const path = new URL(c.req.url).pathname;
  const segment = path.slice(KV_PREFIX.length).split("/", 1)[0] as string;
  let key = "";
  for (let i = 0; i < segment.length; i++) {
    const ch = segment.charCodeAt(i);
    if (ch !== 37 /* % */) {
      key += segment[i];
      continue;
    }
    const hex = segment.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex))
      throw new ClientError("BAD_KEY", `malformed percent-escape in key: %${hex}`);
    key += String.fromCharCode(Number.parseInt(hex, 16));
    i += 2;
  }
  if (key.length === 0 || key.length > maxKey)
    throw new ClientError("BAD_KEY", `key must be 1 to ${maxKey} bytes`);
  for (let i = 0; i < key.length; i++) {
    const ch = key.charCodeAt(i);
    if (ch <= 32 || ch === 127)
      throw new ClientError("BAD_KEY", "key must not contain spaces or control characters");
  }
  return key;
}

const KV_PREFIX = "/v1/kv/";

/** A key as a path segment: every byte that is not unreserved is percent-encoded. */
export function keyPath(key: string): string {
  let out = KV_PREFIX;
  for (let i = 0; i < key.length; i++) {
    const ch = key.charCodeAt(i);
    out += /[A-Za-z0-9\-._~]/.test(key[i] as string)
      ? key[i]
      : `%${ch.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Methods each route takes: any other gets 405 with Allow; OPTIONS gets 204 with Allow. */
export function allowMethods(app: Hono, path: string, methods: string[]): void {
  const allow = methods.includes("GET") ? [...methods, "HEAD", "OPTIONS"] : [...methods, "OPTIONS"];
  app.all(path, (c) => {
    c.header("Allow", allow.join(", "));
    if (c.req.method === "OPTIONS") return c.body(null, 204);
    return fail(
      c,
      405,
      "METHOD_NOT_ALLOWED",
      `${c.req.method} is not allowed here; allowed: ${allow.join(", ")}`,
    );
  });
}

/** The ETag of a version. */
export const etagOf = (version: bigint | string): string => `"${version}"`;

/**
 * Whether a GET's If-None-Match names the current version (weak comparison, as RFC 9110 asks):
 * then the answer is 304.
 */
export function notModified(c: Context, version: bigint | string): boolean {
  const header = c.req.header("If-None-Match");
  if (header === undefined) return false;
  const current = etagOf(version);
  return header
    .split(",")
    .map((t) => t.trim().replace(/^W\//, ""))
    .some((t) => t === "*" || t === current);
}

/**
 * The version a write's If-Match requires: a strong ETag; `*` (the item must exist); or a weak ETag
 * or a list that names no single version, which can never match (412), as RFC 9110's strong
 * comparison says. undefined: no condition.
 */
export function ifMatch(c: Context): bigint | "*" | "never" | undefined {
  const header = c.req.header("If-Match");
  if (header === undefined) return undefined;
  const value = header.trim();
  if (value === "*") return "*";
  const m = strongEtag.exec(value);
  if (m !== null) return BigInt(m[1] as string);
  if (value.split(",").every((t) => anyEtag.test(t.trim()))) return "never";
  throw new ClientError("BAD_REQUEST", 'If-Match must be an ETag such as "42"');
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
const strongEtag = /^"(\d{1,20})"$/;
const anyEtag = /^(?:W\/)?"[^"]*"$/;

export interface PutRequest {
  ttl: number;
  flags: number;
  /** set; add (If-None-Match: *); replace (If-Match: *); cas (If-Match: "version"). */
  mode: "set" | "add" | "replace" | "cas";
  /** The version If-Match names (cas). */
  cas: bigint;
  /** The If-Match can never hold (a weak ETag): refused with 412 without storing. */
  never: boolean;
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
  const match = ifMatch(c);
  const ifNoneMatch = c.req.header("If-None-Match");
  if (match !== undefined) {
    if (match === "*") return { ...params.data, mode: "replace", cas: 0n, never: false };
    if (match === "never") return { ...params.data, mode: "cas", cas: 0n, never: true };
    return { ...params.data, mode: "cas", cas: match, never: false };
  }
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== "*") throw new ClientError("BAD_REQUEST", "If-None-Match supports only *");
    return { ...params.data, mode: "add", cas: 0n, never: false };
  }
  return { ...params.data, mode: "set", cas: 0n, never: false };
}

/** `?by=N` of incr/decr: a 64-bit unsigned amount, 1 when absent. */
export function incrAmount(c: Context): bigint {
  const by = c.req.query("by") ?? "1";
  if (!/^\d{1,20}$/.test(by) || BigInt(by) >= 1n << 64n)
    throw new ClientError("BAD_REQUEST", "by: must be a whole number");
  return BigInt(by);
}

/** The 412 of a conditional PUT that was refused, by the memcached result that refused it. */
export function refusedPut(
  c: Context,
  result: "EXISTS" | "NOT_FOUND" | "NOT_STORED",
  mode: PutRequest["mode"],
): Response {
  if (result === "EXISTS") return fail(c, 412, "CAS_MISMATCH", "the item changed since that version");
  if (result === "NOT_FOUND" || mode === "replace")
    return fail(c, 412, "NOT_FOUND", "no such key to compare with");
  return fail(c, 412, "EXISTS", "the key already holds an item");
}

/** The 412 of an If-Match that can never hold (a weak ETag): nothing is written. */
export function neverMatches(c: Context): Response {
  return fail(c, 412, "CAS_MISMATCH", "If-Match needs a strong ETag of the current version");
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
