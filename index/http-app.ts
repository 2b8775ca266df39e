/**
 * The index's HTTP API: the map as JSON (`GET /v1/cluster`, `?after=V` waits for a newer version),
 * the same changes as the text protocol, `/healthz` and `/metrics`. Changes need the
 * cluster-token or admin-token (Bearer) when one is configured.
 */

import type { Context } from "hono";
import { Hono } from "hono";
import { z } from "zod";
import {
  counterFrom,
  createRegistry,
  gaugeFrom,
  httpMetrics,
  mapMetrics,
  metricsRoute,
} from "../common/metrics.js";
import { fail } from "../protocol/http-kv.js";
import { ROLES, STATES } from "../protocol/node-map.js";
import { mountDashboard } from "./dashboard/routes.js";
import type { Change } from "./node-map.js";
import type { NodeSample } from "./node-stats.js";
import type { IndexService } from "./service.js";

const LONG_POLL_MS = 30_000;

const roleBody = z.object({
  role: z.enum(ROLES),
  balance: z.number().int().min(-1).optional(),
  partition: z.number().int().min(-1).optional(),
});
const stateBody = z.object({ state: z.enum(STATES) });
const target = z.object({ host: z.string().min(1), port: z.coerce.number().int().min(1).max(65535) });

/** `tokens`: Bearer tokens that may change the map (none: open mode, anyone may). */
export function createIndexHttpApp(service: IndexService, tokens: readonly string[]): Hono {
  const app = new Hono();
  const registry = createRegistry("index");
  counterFrom(registry, "flare_failovers_total", "Masters replaced by a slave since start.", [], () => [
    [{}, service.failovers],
  ]);
  gaugeFrom(
    registry,
    "flare_index_leader",
    "1 while this index leads (changes the map, monitors nodes); 0 while it follows another.",
    [],
    () => [[{}, service.leading ? 1 : 0]],
  );
  gaugeFrom(registry, "flare_index_nodes", "Nodes by role and state.", ["role", "state"], () => {
    const counts = new Map<string, number>();
    for (const n of service.map.list())
      counts.set(`${n.role} ${n.state}`, (counts.get(`${n.role} ${n.state}`) ?? 0) + 1);
    return [...counts].map(([k, v]) => {
      const [role, state] = k.split(" ") as [string, string];
      return [{ role, state }, v];
    });
  });
  mapMetrics(
    registry,
    () => service.map.version,
    () => service.map.list(),
  );
  // What the dashboard draws, from the same samples: one source of truth.
  const perNode = (name: string, help: string, read: (s: NodeSample) => number | null): void =>
    gaugeFrom(registry, name, help, ["node"], () =>
      service.stats.nodes().flatMap((node) => {
        const s = service.stats.latest(node);
        const v = s === undefined ? null : read(s);
        return v === null ? [] : [[{ node }, v] as [{ node: string }, number]];
      }),
    );
  perNode(
    "flare_node_ops_per_second",
    "Each node's operations per second (its stats, sampled every second).",
    (s) => s.opsPerSecond,
  );
  perNode("flare_node_hit_ratio", "Each node's get hits / gets over the last second.", (s) => s.hitRatio);
  perNode("flare_node_items", "Items each node holds.", (s) => s.items);
  perNode("flare_node_bytes", "Bytes each node's engine holds.", (s) => s.bytes);
  perNode("flare_node_limit_bytes", "Each node's memory limit (0: none).", (s) => s.limitBytes);
  perNode("flare_node_connections", "Open client connections of each node.", (s) => s.connections);
  perNode(
    "flare_node_replication_lag",
    "Writes each master has queued for its slaves.",
    (s) => s.replicationLag,
  );
  gaugeFrom(
    registry,
    "flare_failover_last_seconds",
    "How long the last failover took: from the dead master's first failed check to the new map stored.",
    [],
    () => {
      const last = service.timeline.findLast((e) => e.tookMs !== undefined);
      return last === undefined ? [] : [[{}, (last.tookMs as number) / 1000]];
    },
  );
  app.use(httpMetrics(registry));
  app.get("/metrics", metricsRoute(registry));

  const snapshot = () => ({
    version: service.map.version,
    nodes: service.map.published(),
    meta: Object.fromEntries(service.meta().map((line) => line.split(" ").slice(1) as [string, string])),
  });

  app.get("/healthz", (c) => c.json({ status: "ok", mapVersion: service.map.version }));

  app.get("/v1/cluster", async (c) => {
    const after = c.req.query("after");
    const wait = c.req.query("wait") ?? String(LONG_POLL_MS);
    if (after !== undefined) {
      if (!/^\d+$/.test(after)) return fail(c, 400, "BAD_REQUEST", "after must be a map version");
      if (!/^\d+$/.test(wait)) return fail(c, 400, "BAD_REQUEST", "wait must be milliseconds");
      await service.waitForVersion(Number(after), Math.min(Number(wait), LONG_POLL_MS));
    }
    return c.json(snapshot());
  });

  // A suspect report only makes the index check a node sooner: anyone who can reach a node may.
  app.use("/v1/nodes/*", async (c, next) => {
    if (tokens.length > 0 && !c.req.path.endsWith("/suspect") && !tokens.includes(bearer(c))) {
      return fail(
        c,
        401,
        "UNAUTHORIZED",
        "this index needs its cluster-token (or admin-token) as a Bearer token for changes",
      );
    }
    await next();
  });

  const answer = async (c: Context, pending: Promise<Change>): Promise<Response> => {
    const change = await pending;
    if (change.ok) return c.json({ ok: true, changed: change.changed, ...snapshot() });
    // Not the leader: try again at the leader (the message names it).
    if (change.leader !== undefined) return fail(c, 503, "NOT_LEADER", change.error);
    return fail(c, 409, "REFUSED", change.error);
  };

  const parse = async <T>(c: Context, schema: z.ZodType<T>): Promise<T | Response> => {
    const t = target.safeParse(c.req.param());
    if (!t.success) return fail(c, 400, "BAD_REQUEST", "host and port name a node");
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return fail(c, 400, "BAD_REQUEST", "body must be JSON");
    }
    const b = schema.safeParse(body);
    if (!b.success)
      return fail(
        c,
        400,
        "BAD_REQUEST",
        `${String(b.error.issues[0]?.path[0])}: ${b.error.issues[0]?.message}`,
      );
    return b.data;
  };

  app.post("/v1/nodes/:host/:port/role", async (c) => {
    const b = await parse(c, roleBody);
    if (b instanceof Response) return b;
    return answer(
      c,
      service.setRole(c.req.param("host"), Number(c.req.param("port")), b.role, b.balance, b.partition),
    );
  });

  app.post("/v1/nodes/:host/:port/state", async (c) => {
    const b = await parse(c, stateBody);
    if (b instanceof Response) return b;
    return answer(c, service.setState(c.req.param("host"), Number(c.req.param("port")), b.state));
  });

  app.delete("/v1/nodes/:host/:port", async (c) => {
    const t = target.safeParse(c.req.param());
    if (!t.success) return fail(c, 400, "BAD_REQUEST", "host and port name a node");
    return answer(c, service.remove(t.data.host, t.data.port));
  });

  /** A proxy that could not reach a node reports it, so the index checks it at once. */
  app.post("/v1/nodes/:host/:port/suspect", (c) => {
    const t = target.safeParse(c.req.param());
    if (!t.success) return fail(c, 400, "BAD_REQUEST", "host and port name a node");
    return service.suspect(t.data.host, t.data.port)
      ? c.json({ ok: true })
      : fail(c, 404, "NOT_FOUND", "unknown node");
  });

  mountDashboard(app, service);

  app.notFound((c) => fail(c, 404, "NO_ROUTE", `no route ${c.req.method} ${c.req.path}`));
  return app;
}

function bearer(c: Context): string {
  const header = c.req.header("Authorization") ?? "";
  return header.startsWith("Bearer ") ? header.slice(7) : "";
}
