/**
 * The proxy as a Cloudflare Worker: the same HTTP key API, reaching nodes over their HTTP APIs. The
 * map comes from the index (`INDEX_URL`), cached, and is refreshed when a node fails; a write to an
 * unreachable master long-polls the index for the next map (`?after=V`) until `WRITE_WAIT_MS`.
 */

import type { Context } from "hono";
import { Hono } from "hono";
import { ClientError } from "../common/errors.js";
import { fail, urlKey } from "../protocol/http-kv.js";
import { partitioning } from "../protocol/key-hash.js";
import type { NodeEntry } from "../protocol/node-map.js";
import { Router } from "./router.js";

interface Env {
  INDEX_URL: string;
  WRITE_WAIT_MS?: string;
}

interface ClusterView {
  version: number;
  nodes: NodeEntry[];
  meta: Record<string, string>;
}

const MAP_TTL_MS = 5000;
const NODE_TIMEOUT_MS = 1000;
const MAX_KEY = 250;

/** Kept per isolate: requests share the map until it is stale or a node fails. */
const state = { router: new Router(), version: -1, fetchedAt: 0 };

async function loadMap(env: Env, after?: number, waitMs = 0): Promise<void> {
  const url = new URL("/v1/cluster", env.INDEX_URL);
  if (after !== undefined) url.searchParams.set("after", String(after));
  const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(waitMs, 0) + NODE_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`index answered ${res.status}`);
  const view = (await res.json()) as ClusterView;
  if (view.version >= state.version) {
    const { algorithm, resolver } = partitioning(new Map(Object.entries(view.meta)));
    state.router.use(algorithm, resolver);
    state.router.update(view.nodes);
    state.version = view.version;
  }
  state.fetchedAt = Date.now();
}

async function freshMap(env: Env): Promise<void> {
  if (state.version < 0 || Date.now() - state.fetchedAt > MAP_TTL_MS) await loadMap(env);
}

function nodeUrl(node: NodeEntry, c: Context): string | undefined {
  if (node.httpPort === undefined) return undefined;
  const url = new URL(c.req.url);
  return `http://${node.host}:${node.httpPort}${url.pathname}${url.search}`;
}

/** Headers a node's key API reads. */
function forwardHeaders(c: Context): Headers {
  const h = new Headers();
  for (const name of ["If-Match", "If-None-Match", "X-Flare-TTL", "X-Flare-Flags", "Content-Type"]) {
    const v = c.req.header(name);
    if (v !== undefined) h.set(name, v);
  }
  return h;
}

async function read(c: Context<{ Bindings: Env }>, key: string): Promise<Response> {
  await freshMap(c.env);
  const tried = new Set<string>();
  let refreshed = false;
  for (;;) {
    const node = state.router.reader(key, tried);
    if (node === undefined) {
      if (refreshed) return fail(c, 503, "UNAVAILABLE", "no replica answered");
      refreshed = true;
      tried.clear();
      await loadMap(c.env);
      continue;
    }
    const url = nodeUrl(node, c);
    if (url !== undefined) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(NODE_TIMEOUT_MS) });
        if (res.status < 500) return new Response(res.body, res);
      } catch {
        // Another replica answers instead.
      }
    }
    tried.add(`${node.host}:${node.port}`);
  }
}

async function write(c: Context<{ Bindings: Env }>, key: string): Promise<Response> {
  await freshMap(c.env);
  const body = c.req.method === "PUT" ? await c.req.arrayBuffer() : undefined;
  const deadline = Date.now() + Number(c.env.WRITE_WAIT_MS ?? 6000);
  for (;;) {
    const seen = state.version;
    const master = state.router.writer(key);
    const url = master === undefined ? undefined : nodeUrl(master, c);
    if (url !== undefined) {
      try {
        const res = await fetch(url, {
          method: c.req.method,
          headers: forwardHeaders(c),
          body,
          signal: AbortSignal.timeout(NODE_TIMEOUT_MS),
        });
        // 503: the node is not (or no longer) the master, or cannot store: ask for the next map.
        if (res.status !== 503) return new Response(res.body, res);
      } catch {
        // Unreachable: wait for the index to name the next master.
      }
    }
    const left = deadline - Date.now();
    if (left <= 0)
      return fail(c, 503, "UNAVAILABLE", "no master for this key: failover did not finish in time");
    await loadMap(c.env, seen, Math.min(left, 2000)).catch(() => new Promise((r) => setTimeout(r, 100)));
  }
}

const app = new Hono<{ Bindings: Env }>();
const keyParam = (c: Context) => urlKey(c.req.param("key") ?? "", MAX_KEY);

app.get("/healthz", (c) => c.json({ status: "ok", mapVersion: state.version }));
app.get("/v1/kv/:key", (c) => read(c, keyParam(c)));
app.put("/v1/kv/:key", (c) => write(c, keyParam(c)));
app.delete("/v1/kv/:key", (c) => write(c, keyParam(c)));
app.post("/v1/kv/:key/:op{incr|decr}", (c) => write(c, keyParam(c)));
app.notFound((c) => fail(c, 404, "NO_ROUTE", `no route ${c.req.method} ${c.req.path}`));
app.onError((err, c) => {
  if (err instanceof ClientError) return fail(c, 400, err.code, err.message);
  return fail(c, 503, "UNAVAILABLE", err.message);
});

export default app;
