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
  /** The index's admin-token, when it has one (reporting a node needs it). */
  ADMIN_TOKEN?: string;
}

interface ClusterView {
  version: number;
  nodes: NodeEntry[];
  meta: Record<string, string>;
}

const MAP_TTL_MS = 5000;
const NODE_TIMEOUT_MS = 1000;
const MAX_KEY = 250;
const SUSPECT_EVERY_MS = 1000;

/** Kept per isolate: requests share the map until it is stale or a node fails. */
const state = { router: new Router(), version: -1, fetchedAt: 0 };

async function loadMap(env: Env, after?: number, waitMs = 0): Promise<void> {
  const url = new URL("/v1/cluster", env.INDEX_URL);
  if (after !== undefined) {
    url.searchParams.set("after", String(after));
    url.searchParams.set("wait", String(Math.max(waitMs, 0)));
  }
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
/** When each node was last reported to the index: once a second is enough to start its check. */
const reported = new Map<string, number>();

const hooks = (env: Env): FailureHooks<Response> => ({
  unreachable: (node) => {
    // The next request fetches the map again: the index may already know about the node.
    state.fetchedAt = 0;
    const key = `${node.host}:${node.port}`;
    const now = Date.now();
    if (now - (reported.get(key) ?? 0) < SUSPECT_EVERY_MS) return;
    reported.set(key, now);
    // Tell the index, so it checks the node now rather than at its next interval.
    const url = new URL(`/v1/nodes/${node.host}/${node.port}/suspect`, env.INDEX_URL);
    const headers =
      env.ADMIN_TOKEN === undefined ? undefined : { Authorization: `Bearer ${env.ADMIN_TOKEN}` };
    void fetch(url, { method: "POST", headers, signal: AbortSignal.timeout(NODE_TIMEOUT_MS) })
      .then((res) => res.body?.cancel())
      .catch(() => undefined);
  },
  refused: (_node, res) => void res.body?.cancel(),
});

/** A node answers 503 when it is not (or no longer) the master, or cannot store. */
const notMaster = (res: Response): boolean => {
  if (res.status !== 503) return false;
  void res.body?.cancel();
  return true;
};

/** Newer maps by long-polling the index (`?after=V`), a short wait at a time, until the deadline. */
const feed = (env: Env): MapFeed => ({
  get version() {
    return state.version;
  },
  async newerThan(version, deadline) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await loadMap(env, version, Math.min(left, 500)).catch(() => new Promise((r) => setTimeout(r, 100)));
    return state.version > version || Date.now() < deadline;
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
    res = await readFromReplicas(state.router, transport, key, req, refused, hooks(c.env));
  } catch (err) {
    if (!(err instanceof ProxyFailure)) throw err;
    // Every replica of our map failed: the index may know better ones.
    await loadMap(c.env);
    res = await readFromReplicas(state.router, transport, key, req, refused, hooks(c.env));
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
  const res = await writeToMaster(
    state.router,
    transport,
    feed(c.env),
    key,
    req,
    notMaster,
    hooks(c.env),
    deadline,
  );
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
