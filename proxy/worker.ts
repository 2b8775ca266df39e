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
import {
  type FailureHooks,
  type MapFeed,
  ProxyFailure,
  readFromReplicas,
  writeToMaster,
} from "./failover.js";
import { Router } from "./router.js";
import { HttpTransport } from "./transports/http-transport.js";

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

/** Headers a node's key API reads. */
function forwardHeaders(c: Context): Headers {
  const h = new Headers();
  for (const name of ["If-Match", "If-None-Match", "X-Flare-TTL", "X-Flare-Flags", "Content-Type"]) {
    const v = c.req.header(name);
    if (v !== undefined) h.set(name, v);
  }
  return h;
}

const transport = new HttpTransport(NODE_TIMEOUT_MS);
const hooks: FailureHooks<Response> = {
  // The next request fetches the map again: the index may already know about the node.
  unreachable: () => {
    state.fetchedAt = 0;
  },
  refused: (_node, res) => void res.body?.cancel(),
};

/** A node answers 503 when it is not (or no longer) the master, or cannot store. */
const notMaster = (res: Response): boolean => {
  if (res.status !== 503) return false;
  void res.body?.cancel();
  return true;
};

/** Newer maps by long-polling the index (`?after=V`), until the deadline. */
const feed = (env: Env): MapFeed => ({
  get version() {
    return state.version;
  },
  async newerThan(version, deadline) {
    while (state.version <= version) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await loadMap(env, version, Math.min(left, 2000)).catch(() => new Promise((r) => setTimeout(r, 100)));
    }
    return true;
  },
});

const pathOf = (c: Context): string => {
  const url = new URL(c.req.url);
  return url.pathname + url.search;
};

async function read(c: Context<{ Bindings: Env }>, key: string): Promise<Response> {
  await freshMap(c.env);
  const req = { method: "GET", path: pathOf(c), headers: new Headers() };
  const refused = (res: Response) => res.status >= 500;
  let res: Response;
  try {
    res = await readFromReplicas(state.router, transport, key, req, refused, hooks);
  } catch (err) {
    if (!(err instanceof ProxyFailure)) throw err;
    // Every replica of our map failed: the index may know better ones.
    await loadMap(c.env);
    res = await readFromReplicas(state.router, transport, key, req, refused, hooks);
  }
  return new Response(res.body, res);
}

async function write(c: Context<{ Bindings: Env }>, key: string): Promise<Response> {
  await freshMap(c.env);
  const req = {
    method: c.req.method,
    path: pathOf(c),
    headers: forwardHeaders(c),
    body: c.req.method === "PUT" ? await c.req.arrayBuffer() : undefined,
  };
  const deadline = Date.now() + Number(c.env.WRITE_WAIT_MS ?? 6000);
  const res = await writeToMaster(state.router, transport, feed(c.env), key, req, notMaster, hooks, deadline);
  return new Response(res.body, res);
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
  // ProxyFailure, or the index could not be reached: the cluster is unavailable for now.
  return fail(c, 503, "UNAVAILABLE", err.message);
});

export default app;
