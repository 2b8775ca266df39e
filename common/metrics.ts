/**
 * Prometheus metrics (prom-client) for every role: one registry per process with a few process
 * metrics, and what the role adds. Values that the hot path already counts (memcached's stats,
 * connections, replication) are read when scraped, so serving a request costs nothing extra; only
 * request latencies are recorded per request, into fixed buckets (a few array writes, no labels
 * hashed), and handed to prom-client on scrape.
 */
import type { Context, MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import { Counter, Gauge, Histogram, type LabelValues, type MetricType, Registry } from "prom-client";
import { VERSION } from "./version.js";

export function createRegistry(role: string): Registry {
  const registry = new Registry();
  // Not prom-client's default metrics: their GC observer cost the node 15% of its get throughput.
  // These few are read when scraped, for free.
  counterFrom(registry, "flare_process_cpu_seconds_total", "CPU time spent, by mode.", ["mode"], () => {
    const u = process.cpuUsage();
    return [
      [{ mode: "user" }, u.user / 1e6],
      [{ mode: "system" }, u.system / 1e6],
    ];
  });
  gaugeFrom(registry, "flare_process_memory_bytes", "Memory in use, by kind.", ["kind"], () => {
    const m = process.memoryUsage();
    return [
      [{ kind: "resident" }, m.rss],
      [{ kind: "heap_used" }, m.heapUsed],
      [{ kind: "external" }, m.external],
    ];
  });
  const startedAt = Date.now() / 1000 - process.uptime();
  gaugeFrom(registry, "flare_process_start_time_seconds", "When the process started (Unix time).", [], () => [
    [{}, startedAt],
  ]);
  gaugeFrom(registry, "flare_info", "This process: its role and version.", ["role", "version"], () => [
    [{ role, version: VERSION }, 1],
  ]);
  return registry;
}

/** Upper bounds in seconds: 50 µs to 5 s (a memory hit to a slow failover). */
const BOUNDS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/** prom-client's types call metric types an enum; at run time they are these strings. */
const HISTOGRAM = "histogram" as unknown as MetricType;

type HistogramData = Awaited<ReturnType<Histogram<"command">["get"]>>;

class Buckets {
  readonly counts = new Float64Array(BOUNDS.length + 1);
  sum = 0;
  count = 0;
}

/** Request latencies by command, recorded on the hot path, exported as one prom-client histogram. */
export class LatencyRecorder {
  private readonly byCommand = new Map<string, Buckets>();
  private lastCommand = "";
  private lastBuckets: Buckets | undefined;

  constructor(registry: Registry, name: string, help: string) {
    const recorder = this;
    registry.registerMetric(
      new (class extends Histogram<"command"> {
        override async get(): Promise<HistogramData> {
          const data = { name, help, type: HISTOGRAM, values: recorder.values(name), aggregator: "sum" };
          return data as HistogramData;
        }
        // The registry renders text from this one (prom-client 15).
        getForPromString() {
          return this.get();
        }
      })({ name, help, labelNames: ["command"], buckets: BOUNDS, registers: [] }),
    );
  }

  /** `n` requests of `command` that each took `seconds`. */
  record(command: string, seconds: number, n = 1): void {
    // Packets mostly repeat one command: skip the lookup then.
    let b = command === this.lastCommand ? this.lastBuckets : this.byCommand.get(command);
    if (b === undefined) {
      b = new Buckets();
      this.byCommand.set(command, b);
    }
    this.lastCommand = command;
    this.lastBuckets = b;
    let i = 0;
    while (i < BOUNDS.length && seconds > (BOUNDS[i] as number)) i++;
    b.counts[i] = (b.counts[i] as number) + n;
    b.sum += seconds * n;
    b.count += n;
  }

  /** Requests recorded so far, by command. */
  *counts(): Iterable<[string, number]> {
    for (const [command, b] of this.byCommand) yield [command, b.count];
  }

  private values(name: string) {
    const out: { value: number; labels: LabelValues<string>; metricName: string }[] = [];
    for (const [command, b] of this.byCommand) {
      let acc = 0;
      BOUNDS.forEach((le, i) => {
        acc += b.counts[i] as number;
        out.push({ value: acc, labels: { command, le }, metricName: `${name}_bucket` });
      });
      out.push({ value: b.count, labels: { command, le: "+Inf" }, metricName: `${name}_bucket` });
      out.push({ value: b.sum, labels: { command }, metricName: `${name}_sum` });
      out.push({ value: b.count, labels: { command }, metricName: `${name}_count` });
    }
    return out;
  }
}

type Reading<L extends string> = () => Iterable<[LabelValues<L>, number]>;

/**
 * A metric whose values are read from somewhere else when scraped: reset, then each value added
 * (for a gauge, adding to 0 sets it).
 */
function readAtScrape<L extends string>(
  Kind: typeof Counter<L> | typeof Gauge<L>,
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: Reading<L>,
): void {
  new Kind({
    name,
    help,
    labelNames,
    registers: [registry],
    collect(this: Counter<L> | Gauge<L>) {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}

export const counterFrom = <L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: Reading<L>,
): void => readAtScrape(Counter<L>, registry, name, help, labelNames, read);

export const gaugeFrom = <L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: Reading<L>,
): void => readAtScrape(Gauge<L>, registry, name, help, labelNames, read);

/** `GET /metrics` for a Hono app. */
export function metricsRoute(registry: Registry) {
  return async (c: Context) =>
    c.body(await registry.metrics(), 200, { "Content-Type": registry.contentType });
}

/** Every HTTP request by method, route and status, with its latency. */
export function httpMetrics(registry: Registry): MiddlewareHandler {
  const histogram = new Histogram({
    name: "flare_http_request_duration_seconds",
    help: "HTTP requests by method, route and status, and how long they took.",
    labelNames: ["method", "route", "status"],
    buckets: BOUNDS,
    registers: [registry],
  });
  return async (c, next) => {
    const started = performance.now();
    await next();
    histogram.observe(
      // The route pattern, not the URL: one series per route, whatever the keys.
      { method: c.req.method, route: routePath(c, -1), status: c.res.status },
      (performance.now() - started) / 1000,
    );
  };
}

/** The node map as this process sees it: its version, and 1 per node with role, state and partition. */
export function mapMetrics(
  registry: Registry,
  version: () => number,
  nodes: () => readonly { host: string; port: number; role: string; state: string; partition: number }[],
): void {
  gaugeFrom(registry, "flare_map_version", "Version of the node map this process follows.", [], () => [
    [{}, version()],
  ]);
  gaugeFrom(
    registry,
    "flare_map_node",
    "Nodes in the node map, by role, state and partition (1 per node).",
    ["node", "role", "state", "partition"],
    function* () {
      for (const n of nodes())
        yield [{ node: `${n.host}:${n.port}`, role: n.role, state: n.state, partition: n.partition }, 1];
    },
  );
}

/** Client connections of a memcached front (node or proxy). */
export function connectionMetrics(
  registry: Registry,
  connections: { current: number; total: number; rejected: number },
): void {
  gaugeFrom(registry, "flare_connections", "Open client connections.", [], () => [[{}, connections.current]]);
  counterFrom(
    registry,
    "flare_connections_total",
    "Client connections accepted or refused.",
    ["result"],
    () => [
      [{ result: "accepted" }, connections.total],
      [{ result: "rejected" }, connections.rejected],
    ],
  );
}
