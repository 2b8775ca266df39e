/**
 * The proxy as a Cloudflare Worker: the same HTTP key API, reaching nodes over their HTTP APIs. The
 * map comes from the index (`INDEX_URL`: one URL, or several, comma-separated, of indexes sharing a
 * map), cached, and is refreshed when a node fails; a write to an unreachable master long-polls
 * the index for the next map (`?after=V`) until `WRITE_WAIT_MS`.
 */

import { Hono } from "hono";
import { createLogger } from "../common/log.js";
import { partitioning } from "../protocol/key-hash.js";
import type { NodeEntry } from "../protocol/node-map.js";
import { type MapFeed, ProxyFailure } from "./failover.js";
import { httpForwarder, type KvForwarder, mountKvProxy } from "./http-app.js";
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
/** memcached's default item-size-max, the nodes' default too. */
const MAX_VALUE = 1024 * 1024;
const SUSPECT_EVERY_MS = 1000;

/** Kept per isolate: requests share the map until it is stale or a node fails. */
const state = { router: new Router(), version: -1, fetchedAt: 0, index: 0 };

const indexUrls = (env: Env): string[] => env.INDEX_URL.split(",").map((u) => u.trim());

/** The map from the index that answered last, else from the next one that answers. */
async function loadMap(env: Env, after?: number, waitMs = 0): Promise<void> {
  const urls = indexUrls(env);
  let view: ClusterView | undefined;
  let failure: unknown;
  for (let i = 0; i < urls.length && view === undefined; i++) {
    const at = (state.index + i) % urls.length;
    const url = new URL("/v1/cluster", urls[at]);
    if (after !== undefined) {
      url.searchParams.set("after", String(after));
      url.searchParams.set("wait", String(Math.max(waitMs, 0)));
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(waitMs, 0) + NODE_TIMEOUT_MS) });
      if (!res.ok) throw new Error(`index answered ${res.status}`);
      view = (await res.json()) as ClusterView;
      state.index = at;
    } catch (err) {
      failure = err;
    }
  }
  if (view === undefined) throw failure;
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

const transport = new HttpTransport(NODE_TIMEOUT_MS);
/** When each node was last reported to the index: once a second is enough to start its check. */
const reported = new Map<string, number>();

/** Tells the index a node did not answer, once a second at most: it checks the node now. */
const unreachable =
  (env: Env) =>
  (node: NodeEntry): void => {
    // The next request fetches the map again: the index may already know about the node.
    state.fetchedAt = 0;
    const key = `${node.host}:${node.port}`;
    const now = Date.now();
    if (now - (reported.get(key) ?? 0) < SUSPECT_EVERY_MS) return;
    reported.set(key, now);
    const headers =
      env.ADMIN_TOKEN === undefined ? undefined : { Authorization: `Bearer ${env.ADMIN_TOKEN}` };
    // Only the leading index checks nodes: every index hears it, the others pass it by.
    for (const base of indexUrls(env)) {
      const url = new URL(`/v1/nodes/${node.host}/${node.port}/suspect`, base);
      void fetch(url, { method: "POST", headers, signal: AbortSignal.timeout(NODE_TIMEOUT_MS) })
        .then((res) => res.body?.cancel())
        .catch(() => undefined);
    }
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

/** Reads and writes by this isolate's map, refreshed first when stale. */
const forwarder = (env: Env): KvForwarder => {
  const base = httpForwarder(
    state.router,
    transport,
    feed(env),
    unreachable(env),
    Number(env.WRITE_WAIT_MS ?? 6000),
  );
  return {
    async read(key, req) {
      await freshMap(env);
      try {
        return await base.read(key, req);
      } catch (err) {
        if (!(err instanceof ProxyFailure)) throw err;
        // Every replica of our map failed: the index may know better ones.
        await loadMap(env);
        return base.read(key, req);
      }
    },
    async write(key, req) {
      await freshMap(env);
      return base.write(key, req);
    },
  };
};

const app = new Hono<{ Bindings: Env }>();
app.get("/healthz", (c) => c.json({ status: "ok", mapVersion: state.version }));
mountKvProxy(
  app,
  (c) => forwarder(c.env),
  { maxKey: MAX_KEY, maxValue: MAX_VALUE },
  createLogger({ role: "worker" }),
);

export default app;
