/**
 * The index's live dashboard: `GET /` (the page), its script, style and chart library (uPlot,
 * served from the package: the page works with no network), `GET /v1/dashboard` (what the page
 * shows, as JSON) and `GET /v1/dashboard/events` (the same, pushed as server-sent events after
 * every change of the map and every round of node stats). Admin actions go through the index's
 * own change API (`/v1/nodes/...`), with its credentials and its refusals.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { nodeKey } from "../../protocol/node-map.js";
import type { IndexService } from "../service.js";
import { dashboardPage } from "./page.js";

/** Timeline entries a page gets. */
const TIMELINE_SHOWN = 50;

interface Asset {
  body: string;
  type: string;
}

/**
 * Where app.js and app.css are: beside this module when it runs from the sources (tests), in the
 * package's index/dashboard when it runs compiled from dist/.
 */
function assetDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return existsSync(join(here, "app.js")) ? here : join(here, "..", "..", "..", "index", "dashboard");
}

/** The page's files, read once from the package (a Map: a name such as `__proto__` is no file). */
function assets(): Map<string, Asset> {
  const here = (file: string): string => readFileSync(join(assetDir(), file), "utf8");
  const require = createRequire(import.meta.url);
  const uplot = (file: string): string => readFileSync(require.resolve(`uplot/dist/${file}`), "utf8");
  return new Map([
    ["app.js", { body: here("app.js"), type: "text/javascript; charset=utf-8" }],
    ["app.css", { body: here("app.css"), type: "text/css; charset=utf-8" }],
    ["uplot.js", { body: uplot("uPlot.iife.min.js"), type: "text/javascript; charset=utf-8" }],
    ["uplot.css", { body: uplot("uPlot.min.css"), type: "text/css; charset=utf-8" }],
  ]);
}

/** What the page shows: the map, what each node is doing, the timeline (newest first). */
function dashboardState(service: IndexService, withHistory: boolean): object {
  const latest: Record<string, unknown> = {};
  for (const n of service.map.list()) {
    const key = nodeKey(n.host, n.port);
    const s = service.stats.latest(key);
    if (s !== undefined) latest[key] = s;
  }
  return {
    version: service.map.version,
    leading: service.leading,
    ...(service.leading ? {} : { notLeader: service.notLeader() }),
    nodes: service.map.published(),
    latest,
    timeline: service.timeline.slice(-TIMELINE_SHOWN).reverse(),
    ...(withHistory ? { history: service.stats.history() } : {}),
  };
}

export function mountDashboard(app: Hono, service: IndexService): void {
  const files = assets();
  const page = dashboardPage();
  // One JSON text per update, whatever the number of pages open.
  let generation = 0;
  let cached = { generation: -1, json: "" };
  service.onUpdate(() => generation++);
  const stateJson = (): string => {
    if (cached.generation !== generation)
      cached = { generation, json: JSON.stringify(dashboardState(service, false)) };
    return cached.json;
  };
  app.get("/", (c) => c.html(page));
  app.get("/dashboard/:file", (c) => {
    const asset = files.get(c.req.param("file"));
    if (asset === undefined) return c.notFound();
    return c.body(asset.body, 200, { "Content-Type": asset.type, "Cache-Control": "max-age=300" });
  });
  app.get("/v1/dashboard", (c) => c.json(dashboardState(service, c.req.query("history") !== undefined)));
  app.get("/v1/dashboard/events", (c: Context) =>
    streamSSE(c, async (stream) => {
      let wake: (() => void) | undefined;
      let pending = true;
      const stop = service.onUpdate(() => {
        pending = true;
        wake?.();
      });
      stream.onAbort(() => {
        stop();
        wake?.();
      });
      let first = true;
      while (!stream.aborted) {
        if (!pending) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (stream.aborted) break;
        pending = false;
        const data = first ? JSON.stringify(dashboardState(service, true)) : stateJson();
        await stream.writeSSE({ event: "state", data });
        first = false;
      }
      stop();
    }),
  );
}
